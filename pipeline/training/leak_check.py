"""Is the test score inflated by copies of training images? Accuracy of the test files that have
an exact copy in the training split against the files that have none.

The course's folders repeat each image 4-37 times (pipeline/data/lines_folder.py), so a random
split of the files (``data.split_by=file``) puts copies of training images in the test split; a
model that memorised them scores higher there than on images it never saw. A datamodule that
knows its copies (``LinesFolderDataModule.test_copied_in_training``) gets both accuracies in
``test_metrics.json`` (``leak``) and on the summary screen; with ``data.split_by=distinct`` (the
default) no test file has a copy in training and the check says so.
"""
from __future__ import annotations

import torch

from pipeline.training.lit_module import head_predictions


@torch.no_grad()
def _correct(module, split, batch: int = 1024) -> torch.Tensor:
    """bool ``[N]``: every head of ``module`` right on each image of ``split`` (the aggregate)."""
    net = module.net.eval()
    heads = dict(module.head_classes)
    from pipeline.data.lines_labels import join_label

    right = []
    for i in range(0, len(split), batch):
        out = net(split.images[i:i + batch].float() / 255)
        if not isinstance(out, dict):
            out = {next(iter(heads)): out}
        preds = {h: head_predictions(out[h]) for h in heads}
        pred = join_label(preds, heads) if len(heads) > 1 else next(iter(preds.values()))
        right.append(pred == split.labels[i:i + batch])
    return torch.cat(right) if right else torch.zeros(0, dtype=torch.bool)


def leak_metrics(module, datamodule) -> dict | None:
    """``{"test_files_copied_in_training", "test_files_unseen", "accuracy_copied", "accuracy_unseen"}``
    (accuracies of every head at once; None where a group is empty), or None when the datamodule
    does not know its copies."""
    copied_of = getattr(datamodule, "test_copied_in_training", None)
    if copied_of is None or datamodule.test is None or len(datamodule.test) == 0:
        return None
    copied = torch.as_tensor(copied_of(), dtype=torch.bool)
    right = _correct(module, datamodule.test)
    acc = lambda m: float(right[m].float().mean()) if m.any() else None  # noqa: E731
    return {"test_files_copied_in_training": int(copied.sum()), "test_files_unseen": int((~copied).sum()),
            "accuracy_copied": acc(copied), "accuracy_unseen": acc(~copied)}


def describe(leak: dict | None) -> list[str]:
    """Summary-screen lines for :func:`leak_metrics`."""
    if not leak:
        return []
    n = leak["test_files_copied_in_training"]
    if n == 0:
        return [f" leak check: no test file has an exact copy in the training split"]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    return [f" leak check: {n} test files are exact copies of training images: accuracy {fmt(leak['accuracy_copied'])}",
            f"             {leak['test_files_unseen']} were never trained on:         accuracy "
            f"{fmt(leak['accuracy_unseen'])}  (data.split_by=distinct keeps copies out of test)"]
