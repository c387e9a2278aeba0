"""AtomTrainer under FSDP2 with 2 CPU processes over gloo (run by test_distributed.py with torchrun).

torch runs FSDP2 (`fully_shard`) on CPU, but accelerate (1.15) turns an FSDP plugin on only for GPU-like distributed
types: on a CPU machine `accelerate launch --config_file fsdp.yaml` and `--fsdp` both fall back to plain data
parallelism without a word (checked: no parameter is a DTensor). `allow_fsdp_on_cpu` lets accelerate's own FSDP2 path
run here, so the Trainer shards the atom model exactly as it does on GPUs. Then:

- the full state dict (gathered from the shards) goes to `<out>/full_state_dict.pt` (rank 0), to be compared with a
  DDP run on the same data;
- a sharded checkpoint (torch.distributed.checkpoint, one file per process) is written and read back into a freshly
  sharded atom model, whose full state dict must equal the trained one. (Trainer's own checkpoint saving fails under
  FSDP2 on CPU inside safetensors, "invalid python storage", so this run saves no Trainer checkpoint.)
"""

import faulthandler
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import accelerate.state
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from accelerate.utils import DistributedType
from tiny_models import bert, text_dataset
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from train_tiny import DEFAULTS
from transformers import HfArgumentParser

import hf_atom
from hf_atom import AtomTrainer, AtomTrainingArguments

FSDP_CONFIG = {"version": 2, "transformer_layer_cls_to_wrap": ["BertLayer"], "state_dict_type": "FULL_STATE_DICT"}


def allow_fsdp_on_cpu() -> None:
    """Keeps the FSDP plugin that accelerate's state drops on CPU (its MULTI_CPU branch ignores it)."""
    original = accelerate.state.AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    accelerate.state.AcceleratorState.__init__ = init


def full_state(model) -> dict[str, torch.Tensor]:
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def main(out_dir: Path) -> None:
    faulthandler.dump_traceback_later(float(os.environ.get("HF_ATOM_HANG_SECONDS", "240")), exit=True)
    allow_fsdp_on_cpu()
    argv = [*DEFAULTS, "--output_dir", str(out_dir), "--save_strategy", "no", "--atom_gather_across_processes", "true"]
    argv += ["--fsdp", "full_shard auto_wrap", "--fsdp_config", json.dumps(FSDP_CONFIG)]
    (args,) = HfArgumentParser(AtomTrainingArguments).parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    torch.manual_seed(0)
    trainer = AtomTrainer(model=bert(), args=args, train_dataset=text_dataset(32))
    trainer.train()
    rank = trainer.args.process_index
    print(f"world_size={trainer.args.world_size}", flush=True)
    model = trainer.model_wrapped
    sharded = sum(isinstance(param, DTensor) for param in model.parameters())
    print(f"fsdp={trainer.is_fsdp_enabled} sharded_parameters={sharded}", flush=True)

    trained = full_state(model)
    if rank == 0:
        torch.save(trained, out_dir / "full_state_dict.pt")

    # Sharded checkpoint round trip into a fresh atom model, sharded the same way (fresh heads: other values).
    dcp.save(get_model_state_dict(model), checkpoint_id=str(out_dir / "sharded"))
    torch.manual_seed(1)
    fresh = hf_atom.with_atom(bert(), trainer.atom_config)
    for layer in fresh.bert.encoder.layer:
        fully_shard(layer)
    fully_shard(fresh)
    before = full_state(fresh)
    state = get_model_state_dict(fresh)
    dcp.load(state, checkpoint_id=str(out_dir / "sharded"))
    set_model_state_dict(fresh, state)
    after = full_state(fresh)
    if rank == 0:
        assert set(after) == set(trained), set(after) ^ set(trained)
        assert not torch.equal(before["atom_head.position.weight"], trained["atom_head.position.weight"])
        assert all(torch.equal(after[key], trained[key]) for key in trained)
        print(f"sharded checkpoint round trip: {len(trained)} tensors equal", flush=True)

    dist.monitored_barrier(timeout=timedelta(seconds=120))
    print(f"rank {rank} finished", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the gloo teardown, which can hang after all work is done (pytorch/pytorch#75097)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
