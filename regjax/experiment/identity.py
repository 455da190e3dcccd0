"""A plan's identity, as its checkpoints record it (checkpoints/plan.json): a run resumes only
from checkpoints that a plan of the same identity made, and a refusal names the first
difference as the user would change it (regjax.experiment.runner.claim_checkpoints)."""

from __future__ import annotations

from regjax.experiment.plan import Plan


def identity(plan: Plan) -> dict:
    """What makes `plan` the plan it is, as its checkpoints record it (JSON): what it
    trains (every model's setting and config, in order), what its report is of, its dataset
    and its share. A run resumes only from the checkpoints of the same identity."""
    return {"kind": plan.kind, "about": plan.about, "dataset": plan.dataset,
            "shard": None if plan.shard is None else list(plan.shard),
            "models": [[name, config.to_dict()] for batch in plan.batches
                       for name, config in batch.members]}


def described(ident: dict) -> dict:
    """An identity's parts by the names a user gave them: a study's techniques, grid and
    regimes, a sweep's knob and values, the seeds, ...; then the settings and the models."""
    about = dict(ident["about"])
    inner = about.pop("study", {})
    parts = {k: v for k, v in inner.items() if k in ("techniques", "grid", "train_sizes",
                                                     "label_noises")}
    parts.update({k: v for k, v in about.items() if k != "programs"})
    parts.update(kind=ident["kind"], dataset=ident["dataset"], shard=ident["shard"],
                 settings=list(dict.fromkeys(name for name, _ in ident["models"])))
    return parts


def difference(saved: dict, now: dict) -> str | None:
    """The first way in which plan identity `now` differs from `saved`, said as the user
    would change it ("techniques ['dropout', 'l2'] (now ['dropout'])", "dropout seed 1:
    epochs=4 (now 5)"), or None where they are the same."""
    old, new = described(saved), described(now)
    for key in dict.fromkeys([*old, *new]):
        if old.get(key) != new.get(key):
            return f"{key} {shown_value(old.get(key))} (now {shown_value(new.get(key))})"
    for (name, before), (_, after) in zip(saved["models"], now["models"]):
        if before != after:
            changed = ", ".join(f"{k}={before.get(k)!r} (now {after.get(k)!r})"
                                for k in dict.fromkeys([*before, *after])
                                if before.get(k) != after.get(k))
            return f"{name} seed {after.get('seed')}: {changed}"
    return None


def shown_value(value) -> str:
    """A value in a message; a long list by its first and last items."""
    if isinstance(value, list) and len(value) > 8:
        return f"[{', '.join(map(repr, value[:3]))}, ... {len(value) - 6} more ..., " \
               f"{', '.join(map(repr, value[-3:]))}]"
    return repr(value)
