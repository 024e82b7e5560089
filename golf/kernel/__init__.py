"""The run kernel: everything a run executes between a validated config and its reported score.

The challenge counts every byte of code a run executes as artifact bytes, so the code that trains,
exports and scores — model, optimizer, data stream, step loop, export chain, evaluator, val_bpb — lives
here as a small set of plain functions and classes, and a recipe's submission script is *generated from
these modules alone* (:mod:`golf.submission`): specialised to the resolved config, unused techniques
absent, then minified and compressed. The lab around the kernel (Hydra entry, validation, role rules,
logging, W&B, progress, checkpoint and requeue, launchers, reports) drives it through
:class:`golf.kernel.hooks.Hooks` and never leaks into it (DESIGN 11b).

The contract every kernel module keeps (checked by ``tests/submission`` and ``make lint``):

1. Imports: the standard library, torch, numpy, sentencepiece and the codec packages; other kernel
   modules only as ``from golf.kernel.x import name`` (no aliases, no ``import golf.kernel.x``); lab
   modules only for type annotations, under ``if TYPE_CHECKING:``.
2. One namespace: top-level names are unique across the kernel (the script is one file).
3. Config arrives as the lab's config objects, annotated with their class (``cfg: ArchConfig``) and only
   read, never written or iterated. The generator folds such reads into literals and drops the branches
   they decide, so ``if cfg.attention.xsa is not None:`` costs nothing when XSA is off. Enum settings are
   compared with their string values (``m.activation == "swiglu"``), which holds for the lab's str enums
   and the script's plain strings alike.
4. Per-parameter decisions (optimizer group, export scheme, QAT and pruning targets) arrive as plain
   tables computed by the lab from parameter roles; the kernel never parses a rule.
5. No validation, logging or progress here: the lab validates before the kernel runs, and the kernel
   reports through its hooks (by default, the record-style lines a submission prints).
6. Role labels are lab metadata carried by the classes that own the parameters: ``PARAM_ROLES`` /
   ``HOST_ROLES`` class attributes of plain tuples; the generator drops them.
7. Terse by design: docstrings and comments are free (the generator strips them), statements are not.
   A variant that differs is a small class or function of its own, chosen by an ``if`` on config.
8. No ``vars``, ``locals``, ``globals``, ``dir``, ``eval`` or ``exec``: with any of them in a script the
   minifier keeps every name as written (one ``vars(self)`` cost pr1493's submission 1,240 bytes).
"""
