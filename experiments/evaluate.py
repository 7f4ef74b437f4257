"""`griffin-eval RUN_DIR [--length L] [--docs N]`: held-out loss by position within documents
from a run's final checkpoint, at lengths beyond the training length (Fig 5: how far past its
training length a model keeps improving). Writes `<run>/eval/loss_by_position_<L>.json`.
RUN_DIR is a local folder or a URL (`gs://`, `s3://`: docs/launching.md)."""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from experiments.cli import _guard
from experiments.configuration import UsageError
from griffin_core.config import ConfigError
from griffin_core.data.errors import DataError
from run_store import CONFIG_FILE, StoreError, one_line, write_json
from run_store.cli import ArgumentParser, positive_int


def load_run(run_dir: str):
    """(RunSpec, store, run id) of a run folder with checkpoints (a path or a URL). Reads only:
    a folder that is not a run, or a run with nothing to evaluate, is refused untouched."""
    from experiments.spec import validate
    from run_store import RunStore, is_url, locations

    folder = run_dir if is_url(run_dir) else os.path.abspath(run_dir)
    run_id = locations.name(folder)
    store = RunStore(locations.parent(locations.parent(folder)))
    try:
        config = store.read_config(run_id)
    except StoreError:  # a corrupt config.yaml: one line naming it
        raise
    except ValueError:  # not a run id: the folder's name has characters run ids never have
        config = None
    if config is None:
        raise UsageError(f"{run_dir}: not a run folder (no config.yaml)")
    if not store.has_checkpoints(run_id):
        raise UsageError(f"{run_dir}: no checkpoint to evaluate (the run has not saved one yet)")
    path = store.run_file(run_id, CONFIG_FILE)
    try:
        return validate(with_current_defaults(config, path)), store, run_id
    except DataError:  # the data the run names: its own one line
        raise
    except (ConfigError, TypeError, KeyError, AttributeError) as err:  # parses, but is no run's config
        raise StoreError(f"{path}: corrupt config file ({one_line(err)})") from None


def with_current_defaults(config: dict, path: str = CONFIG_FILE) -> dict:
    """A stored config merged over today's schema, so fields added since the run was made
    take their defaults (the defaults reproduce the old behaviour). StoreError naming `path`
    if it does not fit the schema."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from conf.schema import Config

    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), config)
        return OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise StoreError(f"{path}: corrupt config file ({one_line(str(err).splitlines()[0])})") from None


def pulled(folder) -> str:
    """The folder Orbax reads: the store's own, or (a bucket Orbax cannot read) a local copy of
    its newest complete checkpoint."""
    folder.pull()
    return folder.path


def loss_by_position(run_dir: str, length: int, max_docs: int) -> dict[str, Any]:
    import jax
    import numpy as np

    from experiments.run_data import build_source
    from griffin_core.checkpoint import Checkpointer, LegacyCheckpoint, UnreadableCheckpoint, abstract_like
    from griffin_core.data import count_long_documents, long_documents
    from griffin_core.model import init_params
    from griffin_core.train_step import eval_step
    from run_store.checkpoints import CheckpointFolder
    from run_store.locations import join

    spec, store, run_id = load_run(run_dir)
    with CheckpointFolder(store.ckpt_dir(run_id)) as folder, Checkpointer(pulled(folder), read_only=True) as ckpt:
        step = ckpt.latest_step()
        if step is None:
            raise UsageError(f"{run_dir}: no complete checkpoint to evaluate")
        # The parameters alone, in the layer layout they were saved in (the forward pass runs
        # either); the optimiser state is not read.
        try:
            model = spec.model.replace(scan_layers=ckpt.stored_scanned(step))
            abstract = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0)))
            device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            on_device = abstract_like(abstract, jax.tree_util.tree_map(lambda _: device, abstract))
            params = ckpt.restore_params(step, on_device)
        except LegacyCheckpoint as err:
            raise UsageError(f"{run_dir}: {err}") from None
        except UnreadableCheckpoint as err:
            raise StoreError(f"{join(store.ckpt_dir(run_id), str(step))}: corrupt checkpoint ({err.reason})") from None
    source = build_source(spec.data)
    available = count_long_documents(source, length)
    if not available:
        raise UsageError(f"no held-out document has {length + 1} tokens; try a shorter --length")
    docs = long_documents(source, length, max_docs=max_docs)
    evaluate = jax.jit(lambda p, b: eval_step(model, p, b))
    sums = np.zeros(length)
    n = docs["tokens"].shape[0]
    for i in range(n):  # one document at a time: memory stays that of one long sequence
        batch = {k: v[i:i + 1] for k, v in docs.items()}
        sums += np.asarray(evaluate(params, batch)["pos_loss"])
    losses = (sums / n).tolist()
    return {"run_id": run_id, "family": spec.family, "size": spec.size, "use_rope": spec.model.use_rope,
            "train_seq_len": spec.schedule.seq_len, "length": length, "documents": n, "checkpoint_step": step,
            "loss_by_position": losses, "mean_loss": float(np.mean(losses))}


def _eval(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="griffin-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="run folders (<root>/runs/<run-id>: a path or a bucket URL)")
    parser.add_argument("--length", type=positive_int, default=None,
                        help="evaluation length (default 4 x training length)")
    parser.add_argument("--docs", type=positive_int, default=16, help="held-out documents to average over")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:  # every folder checked before any is evaluated
        load_run(run_dir)
    for run_dir in args.run_dirs:
        spec, store, run_id = load_run(run_dir)
        length = args.length or 4 * spec.schedule.seq_len
        out = loss_by_position(run_dir, length, args.docs)
        path = store.run_file(run_id, f"eval/loss_by_position_{length}.json")
        write_json(path, out)
        quarter = [out["loss_by_position"][int(f * length) - 1] for f in (0.25, 0.5, 0.75, 1.0)]
        print(f"{out['run_id']}: mean {out['mean_loss']:.4f} nats over {out['documents']} documents of {length}; "
              f"at 1/4, 1/2, 3/4, end: " + ", ".join(f"{q:.3f}" for q in quarter) + f" -> {path}")
    return 0


main = _guard(_eval, "griffin-eval")

if __name__ == "__main__":
    sys.exit(main())
