"""``job=filters``: what each unit wants -- feature visualization (config: ``filters.*`` in
conf/job/filters.yaml).

For every convolution layer (or ``layer=``) one picture per unit, optimized in one batch
(:class:`~pipeline.visualization.feature_vis.FeatureVisualizer`): ``objective`` channel (mean of
the channel), neuron (its centre unit) or class (a head's logit; ``layer=heads.angle``);
``param`` pixel or fft (decorrelated Fourier space, sigmoid); random ``transforms`` per step;
optional L1 / TV / blur penalties and a diversity term over ``copies`` pictures per target.
Without ``layer=`` the class pictures of every head come too (``class_pictures``). The first
convolution reads the image, so its units are linear in the pixels and their best input under a norm
bound is the kernel itself: its raw kernels are its main figure, and its unit pictures are grey + the
kernel, in closed form (:mod:`~pipeline.visualization.first_layer`, objective neuron; ``first_layer=ascent``
for the ascent). Class pictures stand in class order, those the model gives p < ``reached`` for their own
class marked "not reached". Stored under ``filters/<layer>/<objective>`` and ``kernels/<layer>``.
"""
from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from pipeline.errors import CnnvisError
from pipeline.jobs.base import safe_name
from pipeline.report.sections import Figure, Section, Table
from pipeline.visualization.class_words import class_words
from pipeline.visualization.context import VisContext
from pipeline.visualization.feature_objectives import OBJECTIVES
from pipeline.visualization.feature_param import PARAMS, Parametrization
from pipeline.visualization.feature_transforms import check_transforms
from pipeline.visualization.feature_vis import FeatureVisualizer, head_layers
from pipeline.visualization.first_layer import kernel_pictures, reads_the_input
from pipeline.visualization.inputs import Selection
from pipeline.visualization.layers import conv_layer_names

__all__ = ["FiltersJob", "data_prior", "prior_setting"]

FIRST_LAYER = ("kernel", "ascent")
LEGEND = {"channel": "mean activation of the channel", "neuron": "activation of the channel's centre unit",
          "class": "the head's logit for the class (p: the model's probability for that class on this picture)"}


def prior_setting(dataset: str | None, objective: str, key: str, given, priors: dict | None = None, default=0):
    """One setting by the data and picture kind: ``given`` when not None, else
    ``priors[dataset]["class" | "unit"][key]`` for class pictures (``objective="class"``) or unit pictures
    (channel, neuron), the dataset falling back to ``"default"`` (``filters.priors`` in conf/job/filters.yaml,
    measured by benchmarks/grid_feature_vis.py), else ``default``."""
    if given is not None:
        return given
    priors = priors or {}
    entry = priors.get(dataset) or priors.get("default") or {}
    return (entry.get("class" if objective == "class" else "unit") or {}).get(key, default)


def data_prior(dataset: str | None, objective: str, lhalf: float | None, centre: float | None,
               channels: list[int] | None = None, priors: dict | None = None) -> tuple[float, float, list[int] | None]:
    """``(lhalf, centre, channels)``: the given values, or where None the dataset's prior
    (:func:`prior_setting`), else 0 / all channels."""
    lhalf = prior_setting(dataset, objective, "lhalf", lhalf, priors, 0.0)
    centre = prior_setting(dataset, objective, "centre", centre, priors, 0.0)
    channels = prior_setting(dataset, objective, "channels", channels, priors, None)
    return float(lhalf), float(centre), None if channels is None else [int(c) for c in channels]


class FiltersJob:
    def __init__(self, ctx: VisContext, layers: list[str] | None, seed: int, *, objective: str = "channel",
                 param: str = "pixel", transforms: list[str] | None = None, steps: int = 32, lr: float = 0.05,
                 noise: float = 0.01, jitter: float = 2.0, scale: float = 0.1, rotate: float = 10.0, l1: float = 0.0,
                 lhalf: float | None = None, centre: float | None = None, channels: list[int] | None = None,
                 priors: dict | None = None, tv: float = 0.0, blur: float = 0.0, diversity: float = 0.0, copies: int = 1,
                 classes: list[int] | None = None, class_pictures: bool = True, top: int = 25,
                 max_filters: int | None = None, polish: int | None = None, polish_lr: float = 0.1,
                 polish_mask: float = 0.0, restarts: int | None = None, reached: float = 0.5,
                 first_layer: str = "kernel"):
        self.ctx, self.seed, self.top, self.max_filters, self.classes = ctx, seed, top, max_filters, classes
        self.reached = reached
        if first_layer not in FIRST_LAYER:
            raise CnnvisError(f"filters.first_layer={first_layer} is unknown: use one of {', '.join(FIRST_LAYER)} "
                              f"(kernel: the first convolution's pictures are grey + its kernels, their exact optimum; "
                              f"ascent: gradient ascent on filters.objective like every other layer)")
        def bad(msg):
            return CnnvisError(f"filters: {msg}")
        if objective not in OBJECTIVES:
            raise CnnvisError(f"filters.objective={objective} is unknown: use one of {', '.join(OBJECTIVES)}")
        if param not in PARAMS:
            raise CnnvisError(f"filters.param={param} is unknown: use one of {', '.join(PARAMS)}")
        try:
            transforms = check_transforms(["jitter", "scale", "rotate"] if transforms is None else transforms)
        except ValueError as exc:
            raise bad(str(exc)) from None
        for key, value in (("steps", steps), ("top", top), ("copies", copies)):
            if value < 1:
                raise CnnvisError(f"filters.{key}={value} is invalid: it must be a positive integer")
        for key, value in (("lr", lr), ("polish_lr", polish_lr)):
            if value <= 0:
                raise CnnvisError(f"filters.{key}={value} is invalid: it must be positive")
        if polish is not None and polish < 0:
            raise CnnvisError(f"filters.polish={polish} is invalid: it must be >= 0 (0 = no polish; null = the data's prior)")
        if restarts is not None and restarts < 1:
            raise CnnvisError(f"filters.restarts={restarts} is invalid: it must be >= 1 (1 = one start per picture; "
                              f"null = the data's prior)")
        if not 0 < reached < 1:
            raise CnnvisError(f"filters.reached={reached} is invalid: it must be a probability in (0, 1) (a class "
                              f"picture the model gives p < reached for its own class is marked 'not reached')")
        if not 0 <= polish_mask < 1:
            raise CnnvisError(f"filters.polish_mask={polish_mask} is invalid: it must be in [0, 1) (0 = no mask)")
        for key, value in (("noise", noise), ("jitter", jitter), ("scale", scale), ("rotate", rotate), ("l1", l1),
                           ("lhalf", lhalf), ("centre", centre), ("tv", tv), ("blur", blur), ("diversity", diversity)):
            if value is not None and value < 0:  # lhalf / centre: None = the data's prior
                raise CnnvisError(f"filters.{key}={value} is invalid: it must be >= 0")
        heads = head_layers(ctx.net, ctx.input_shape)
        convs = conv_layer_names(ctx.net)
        if objective == "class":
            wrong = [n for n in layers or [] if n not in heads]
            if wrong:
                raise bad(f"objective=class needs a head layer, {', '.join(wrong)} is not one: "
                          f"the heads are {', '.join(heads)}")
            self.jobs = [(n, "class") for n in (layers or self._outer(heads))]
            for n, _ in self.jobs:
                out = [c for c in classes or [] if not 0 <= c < heads[n]]
                if out:
                    raise bad(f"class {out[0]} is out of range for {n}: valid classes are 0..{heads[n] - 1}")
        else:
            wrong = [n for n in layers or [] if n not in convs]
            if wrong:
                raise bad(f"{', '.join(wrong)} is not a convolution layer; {objective} pictures are computed for "
                          f"convolution layers: {', '.join(convs)} (class pictures: objective=class, "
                          f"layer={next(iter(self._outer(heads)), '...')})")
            self.jobs = [(n, objective) for n in layers or convs]
            if not layers and class_pictures:
                self.jobs += [(n, "class") for n in self._outer(heads)]
        self.heads = heads
        self.kernel_layer = None  # the first convolution, when its unit pictures come in closed form
        if first_layer == "kernel" and objective != "class" and convs and \
                any(n == convs[0] for n, _ in self.jobs) and reads_the_input(ctx.net, convs[0], ctx.input_shape):
            self.kernel_layer = convs[0]
            self.jobs = [(n, "neuron" if n == convs[0] else o) for n, o in self.jobs]
        self.settings = dict(param=param, transforms=transforms, steps=steps, lr=lr, noise=noise, jitter=jitter,
                             scale=scale, rotate=rotate, l1=l1, tv=tv, blur=blur, diversity=diversity, copies=copies,
                             polish_lr=polish_lr, polish_mask=polish_mask)
        self.given, self.priors = dict(lhalf=lhalf, centre=centre, channels=channels), priors
        self.given_polish, self.given_restarts = polish, restarts
        for kind in {o for _, o in self.jobs}:
            chans = self.settings_for(kind)["channels"]
            if chans is not None and not all(0 <= c < ctx.input_shape[0] for c in chans):
                raise CnnvisError(f"filters.channels={list(chans)} is invalid: the input has channels "
                                  f"0..{ctx.input_shape[0] - 1}")

    def settings_for(self, objective: str) -> dict:
        """The optimization settings of one objective: lhalf / centre / channels as given, else the data's prior."""
        lhalf, centre, channels = data_prior(getattr(self.ctx, "dataset_name", None), objective, **self.given,
                                             priors=self.priors)
        polish = prior_setting(getattr(self.ctx, "dataset_name", None), objective, "polish", self.given_polish,
                               self.priors)
        restarts = prior_setting(getattr(self.ctx, "dataset_name", None), objective, "restarts", self.given_restarts,
                                 self.priors, 1)
        return {**self.settings, "lhalf": lhalf, "centre": centre, "channels": channels, "polish": int(polish),
                "restarts": int(restarts)}

    @staticmethod
    def _outer(heads: dict) -> list[str]:
        """The outermost head layers (``heads.angle``, not also ``heads.angle.out``)."""
        return [n for n in heads if not any(n.startswith(o + ".") for o in heads if o != n)]

    def class_names(self, layer: str) -> list[str]:
        """The readable class names of a head layer ("15°", "thick", "digit 3")."""
        from pipeline.data.lines_labels import head_class_names

        head = next((h for h in self.ctx.head_classes if layer == f"heads.{h}" or layer.startswith(f"heads.{h}.")),
                    "class")
        dataset = getattr(self.ctx, "dataset_name", None)
        return [class_words(n, dataset) for n in head_class_names(head, self.heads[layer], self.ctx.class_names)]

    def start_words(self, s: dict) -> str:
        """Where the ascent starts, in words, measured on the real start (:class:`Parametrization`, seeded)."""
        start = Parametrization(s["param"], 4, self.ctx.input_shape, seed=self.seed, noise=s["noise"],
                                channels=s.get("channels")).image().detach()
        chans = s.get("channels")
        used = start if chans is None else start[:, list(chans)]
        grey = (f"a blank grey image (every pixel 0.5" if chans is None else
                f"a blank grey image (0.5 in input channels {list(chans)}, the others 0")
        return (grey + f", plus seeded {'Fourier ' if s['param'] == 'fft' else ''}noise of std "
                f"{float((used - 0.5).std()):.2g})" + (f", {s['restarts']} such starts per picture, the best kept"
                                                       if s.get("restarts", 1) > 1 else ""))

    def legend(self, res) -> str:
        """The figure legend of one layer's pictures: the start, the order, the score, the settings."""
        if res.settings.get("param") == "kernel":
            return (f"{res.layer} reads the image, so each unit is linear in the pixels (b + sum w x): under a norm "
                    f"bound its best input is its kernel itself. Each picture is the blank grey image (0.5) plus the "
                    f"kernel on the centre unit's receptive field, scaled to fill [0, 1] (the exact optimum in the "
                    f"largest L2 ball around grey that stays in [0, 1]); shown cropped to rows "
                    f"{res.settings['window'][0]}-{res.settings['window'][1] - 1}, columns "
                    f"{res.settings['window'][2]}-{res.settings['window'][3] - 1} of the input (+1 px). "
                    f"#rank: by score, best first (= lowest loss = -score); score = {LEGEND['neuron']}. Gradient "
                    f"ascent on the channel's mean would only see the kernel's sum (every pixel all positions see gets "
                    f"the same gradient) and saturates the picture to a white or black field with a frame "
                    f"(filters.first_layer=ascent shows it).")
        start = f"Gradient ascent starts from {self.start_words(res.settings)}; {self.how(res.settings)}."
        if res.objective == "class":
            return (f"Tiles in class order; under each class: score = {LEGEND['class']}. 'not reached' (red): "
                    f"p < {self.reached:g}, the model does not take the picture for its class.\n"
                    f"A black picture is one the penalties emptied: no pixel raised the logit by more than it cost.\n"
                    + start)
        return (f"#rank: by score, best first = by the loss the ascent minimises (loss = -score), lowest first; "
                f"u<unit>: the channel; score = {LEGEND[res.objective]} on the picture.\n" + start)

    def compute(self, images: Selection, batch_size: int) -> dict:
        """``{"patterns": [FeatureResult], "kernels": {layer: weights}}`` (patterns start from seeded noise)."""
        out = []
        for layer, objective in tqdm(self.jobs, desc="filter layers", unit="layer"):
            vis = FeatureVisualizer(self.ctx.net, layer, self.ctx.input_shape)
            targets = self.classes if objective == "class" else None
            if targets is None and self.max_filters and objective != "class":
                targets = list(range(min(vis.n_units, self.max_filters)))
            if layer == self.kernel_layer:
                out.append(kernel_pictures(self.ctx.net, layer, self.ctx.input_shape, targets,
                                           self.settings_for(objective)["channels"]))
                continue
            out.append(vis(targets, objective=objective, seed=self.seed, **self.settings_for(objective)))
        convs = conv_layer_names(self.ctx.net)
        first = dict(self.ctx.net.named_modules())[convs[0]] if convs else None
        kernels = {convs[0]: first.weight.detach().float().cpu()} if first is not None else {}
        return {"patterns": out, "kernels": kernels}

    def store(self, result: dict, writer, run_dir: Path) -> None:
        for res in result["patterns"]:
            writer.write_filters(res.layer, res.patterns, res.scores, res.start_scores, res.targets, res.ranking,
                                 attrs={**res.settings, "transforms": ",".join(res.settings["transforms"]),
                                        "channels": ",".join(map(str, res.settings["channels"] or [])) or "all"},
                                 objective=res.objective, probs=res.probs)
        for layer, w in result["kernels"].items():
            writer.write_kernels(layer, w)

    @staticmethod
    def how(s: dict) -> str:
        """The optimization settings ``s`` in words (figure legends, report)."""
        if s.get("param") == "kernel":
            return ("closed form, no ascent: grey + 0.5 x the centre unit's input gradient / its largest |value|, "
                    "which for a first convolution is the kernel itself on the unit's receptive field"
                    + (f"; input channels {s['channels']} only" if s.get("channels") is not None else ""))
        pens = ", ".join(f"{k} {s[k]:g}" for k in ("l1", "lhalf", "centre", "tv", "blur") if s[k])
        return (f"{s['param']} parametrization, transforms {'+'.join(s['transforms']) or 'none'}, {s['steps']} Adam "
                f"steps (lr {s['lr']:g})" + (f"; penalties x |score|: {pens}" if pens else "")
                + (f"; input channels {s['channels']} only" if s.get("channels") is not None else "")
                + (f"; best of {s['restarts']} starts by score" if s.get("restarts", 1) > 1 else "")
                + (f"; then {s['polish']} polish steps on the objective alone (lr {s['polish_lr']:g}"
                   + (", lit pixels only" if s.get("polish_mask") else "") + ")" if s.get("polish") else ""))

    def render(self, result: dict, fig_dir: Path) -> dict[str, list[Figure]]:
        from pipeline.rendering.feature_figures import render_feature_grid, render_kernel_grid

        d = fig_dir / "filters"
        figures: dict[str, list[Figure]] = {}
        for res in result["patterns"]:
            cls = res.objective == "class"
            names = self.class_names(res.layer) if cls else None
            base = d / f"{safe_name(res.layer)}_{res.objective}"
            n, k = len(res), min(self.top, len(res))
            patterns, what = res.patterns, f"{res.objective} pictures"
            if res.settings.get("param") == "kernel":  # the receptive field, 1 px of grey around it
                r0, r1, c0, c1 = res.settings["window"]
                patterns = patterns[..., max(0, r0 - 1):r1 + 1, max(0, c0 - 1):c1 + 1]
                what = "unit pictures (grey + the kernel itself)"
            kw = dict(legend=self.legend(res), names=names, probs=res.probs, order="class" if cls else "score",
                      reached=self.reached)
            order = "in class order" if cls else "ranked by score"
            path = render_feature_grid(patterns, res.scores, res.targets, Path(f"{base}_all.png"),
                                       f"{res.layer}: all {n} {what}, {order}", **kw)
            figs = [Figure(path, f"{res.layer}: every {res.objective} picture, "
                                 + ("in class order" if cls else "best first"))]
            if k < n:  # a top-k figure only when it differs from the full one
                path = render_feature_grid(patterns, res.scores, res.targets, Path(f"{base}_top{k}.png"),
                                           f"{res.layer}: top {k} of {n} {what} by score"
                                           + (", in class order" if cls else ""), top=k, **kw)
                figs.insert(0, Figure(path, f"{res.layer}: the {k} pictures with the highest score"))
            figures[f"{res.layer} ({res.objective})"] = figs
        first = {}
        for layer, w in result["kernels"].items():  # the first layer's main figure: before its pictures
            f, c, kh, kw_ = w.shape
            colour = "red: pixels the unit wants bright, blue: dark" if c != 3 else \
                "a channel above grey: the unit wants that colour bright, below: dark"
            path = render_kernel_grid(w, d / f"{safe_name(layer)}_kernels.png",
                                      f"{layer}: its {f} learned {kh}x{kw_} kernels ({c} input channel"
                                      f"{'s' if c > 1 else ''}), one colour scale", legend=(
                                          f"{layer} reads the image: each unit computes b + sum w x over its "
                                          f"{kh}x{kw_} window, so under a norm bound its best input is its kernel "
                                          f"itself ({colour}). Tiles in unit order, k<unit>."))
            first[f"{layer} (kernels: the first layer's best inputs)"] = [
                Figure(path, f"{layer}: the learned weights, each kernel the best input of its unit")]
        return {**first, **figures}

    def section(self, result: dict, figures: dict[str, list[Figure]]) -> Section:
        rows = []
        for res in result["patterns"]:
            best = int(res.targets[res.ranking[0]])
            rows.append([res.layer, res.objective, len(res), float(res.start_scores.mean()), float(res.scores.mean()),
                         self.class_names(res.layer)[best] if res.objective == "class" else best,
                         float(res.scores.max())])
        return Section("Filter patterns (feature visualization)",
                       paragraphs=["The picture each unit wants, all targets of a layer in one batch, by gradient "
                                   "ascent from a blank grey image; "
                                   + "; ".join(f"{kind} pictures: {self.how(self.settings_for(kind))}"
                                               for kind in dict.fromkeys(o for n, o in self.jobs
                                                                         if n != self.kernel_layer))
                                   + " (transforms drawn per step)."
                                   + (f" {self.kernel_layer} reads the image, so each of its units is linear in the "
                                      f"pixels and its best input under a norm bound is its kernel: its pictures are "
                                      f"grey + the kernel ({self.how({'param': 'kernel'})}), scored by the centre "
                                      f"unit." if self.kernel_layer else "")
                                   + " Unit pictures are ranked by score (= lowest loss, loss = -score); class "
                                   f"pictures stand in class order, 'not reached' where p < {self.reached:g}. Scores: "
                                   + "; ".join(f"{k}: {v}" for k, v in LEGEND.items())
                                   + ". Stored under filters/<layer>/<objective>, raw kernels under kernels/<layer>."],
                       observations=feature_observations(result, self),
                       tables=[Table("Objective reached per layer", ["layer", "objective", "pictures", "mean start",
                                                                     "mean final", "best", "best score"], rows)],
                       subsections=_fold_middle_layers([Section(name, figures=figs) for name, figs in figures.items()]),
                       key_numbers=self.key_numbers(result))

    @staticmethod
    def key_numbers(result: dict) -> dict[str, float]:
        """The sweep index's numbers: per layer, the mean probability the model gives each class
        picture for its own class (class objective), else the mean final score."""
        out = {}
        for res in result["patterns"]:
            if res.probs is not None:
                out[f"{res.layer}: mean p of own class"] = float(res.probs.float().mean())
            else:
                out[f"{res.layer}: mean {res.objective} score"] = float(res.scores.float().mean())
        return out


def _fold_middle_layers(sections: list[Section]) -> list[Section]:
    """The report opens the unit pictures of the last layer (the course's top-25 / all of conv3) and the
    first layer's kernels; the unit pictures of the layers between them are folded (one click opens them)."""
    units = [s for s in sections if s.title.endswith(("(channel)", "(neuron)"))]
    for sec in units[:-1]:
        sec.folded = True
        sec.note = "a middle layer, folded: click to open"
    return sections


def feature_observations(result: dict, job: FiltersJob) -> list[str]:
    """How far the optimization raised each objective; class pictures the model is sure of; colour in layer 1."""
    out = []
    for res in result["patterns"]:
        raised = float(((res.scores - res.start_scores) > 0).float().mean())
        if res.settings.get("param") == "kernel":
            out.append(f"{res.layer} (grey + kernel): {int((res.scores > 0).sum())} of {len(res)} units reach a "
                       f"positive score on their kernel picture, {int((res.start_scores > 0).sum())} on the blank grey "
                       f"image (mean {float(res.start_scores.mean()):.3g} -> {float(res.scores.mean()):.3g}).")
            continue
        out.append(f"{res.layer} ({res.objective}): the optimization raised {raised:.0%} of the objectives "
                   f"(mean {float(res.start_scores.mean()):.3g} -> {float(res.scores.mean()):.3g}).")
        if res.probs is not None:
            out.append(f"{res.layer}: the model gives {int((res.probs > 0.9).sum())} of {len(res)} class pictures "
                       f"a probability > 0.9 for their own class.")
        if res.objective == "channel" and res.patterns.shape[1] == 3 and res is result["patterns"][0]:
            p = res.patterns - res.patterns.mean(dim=(2, 3), keepdim=True)
            energy = p.pow(2).mean(dim=(2, 3))
            share = energy.max(1).values / energy.sum(1).clamp_min(1e-12)
            out.append(f"{res.layer}: {int((share > 0.5).sum())} of {len(res)} pictures put most of their contrast "
                       f"into one colour channel (colour detectors).")
    return out
