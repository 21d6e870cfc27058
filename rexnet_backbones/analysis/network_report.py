"""Tables and figures of rank along networks (:func:`.network.analyse_models` results): per stage, both
centrings side by side, row-capped layers flagged."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from .estimators import CENTRINGS

__all__ = ['stage_summary', 'capped_note', 'profile_markdown', 'plot_profiles', 'seed_differences', 'seed_markdown']

#: the mark of a value measured on a row-capped layer
CAPPED_MARK = '†'


def _ratio(layer: Dict[str, Any], centring: str, estimator: str) -> Optional[float]:
    part = layer.get(centring)
    return None if part is None else part['rank_ratio'][estimator]


def stage_summary(layers: Sequence[Dict[str, Any]], estimator: str, threshold: float,
                  flops_by_module: Optional[Dict[str, int]] = None) -> List[Dict[str, Any]]:
    """Per stage (consecutive layers of one output stride): mean and minimum rank ratio of ``estimator``
    per centring (``mean``/``min``: ``{centring: value}``; ``min_capped``: whether that minimum is a
    row-capped layer), ``num_capped`` layers, layers below ``threshold`` in the layers' own centring
    (``center``; bottlenecks), and FLOPs of the stage's blocks."""
    stages: List[Dict[str, Any]] = []
    for layer in layers:
        if not stages or stages[-1]['stride'] != layer['stride']:
            stages.append(dict(stride=layer['stride'], layers=[]))
        stages[-1]['layers'].append(layer)
    out = []
    for i, st in enumerate(stages):
        ls = st['layers']
        blocks = [x['name'] for x in ls if x['kind'] == 'block']
        mean, low, low_capped = {}, {}, {}
        for c in CENTRINGS:
            vals = [(_ratio(x, c, estimator), x.get('row_capped', False)) for x in ls]
            if any(v is None for v, _ in vals):
                continue
            mean[c] = sum(v for v, _ in vals) / len(vals)
            low[c], low_capped[c] = min(vals, key=lambda t: t[0])
        out.append(dict(
            stage=i, stride=st['stride'], num_layers=len(ls), num_capped=sum(x.get('row_capped', False) for x in ls),
            blocks=blocks, mean=mean, min=low, min_capped=low_capped,
            bottlenecks=[x['name'] for x in ls if x['rank_ratio'][estimator] < threshold],
            flops=sum(flops_by_module.get(b, 0) for b in blocks) if flops_by_module is not None else None))
    return out


def capped_note(result: Dict[str, Any]) -> str:
    """One sentence on the row-capped layers of a model and what would un-cap them."""
    layers = result['layers']
    capped = [x for x in layers if x.get('row_capped')]
    k = result.get('rows_per_channel', 4)
    if not capped:
        return f'No layer is row-capped (every layer has at least {k} rows per channel).'
    n = max(1, result['num_images'])
    need = max(math.ceil(k * x['channels'] / max(1, x['rows_available'] // n)) for x in capped)
    names = ', '.join(f"`{x['name']}` ({x['rows']} rows, {x['channels']} ch)" for x in capped[:4])
    more = f' and {len(capped) - 4} more' if len(capped) > 4 else ''
    return (f"{len(capped)} of {len(layers)} layers are row-capped (fewer than {k} rows per channel; their ratios "
            f"are marked {CAPPED_MARK} and bounded by the sample count): {names}{more}. {need} images at this size "
            '(--num-images), larger images, or a larger --row-cap would un-cap them.')


def _cell(stage: Dict[str, Any], what: str, centring: str) -> str:
    v = stage[what].get(centring)
    if v is None:
        return '-'
    mark = CAPPED_MARK if what == 'min' and stage['min_capped'].get(centring) else ''
    return f'{v:.3f}{mark}'


def profile_markdown(results: Sequence[Dict[str, Any]], estimator: str, threshold: float) -> str:
    """rank.md: per model, per stage mean/min rank ratio (centred and uncentred), row-capped layers,
    bottleneck layers and FLOPs."""
    lines = []
    for r in results:
        own = 'centred' if r.get('center') else 'uncentred'
        lines += [f"### {r['label']}", '',
                  f"{len(r['layers'])} layers ({sum(x['kind'] == 'expand' for x in r['layers'])} expand layers), "
                  f"{r['flops'] / 1e6:.1f} MFLOPs in total (mmengine FlopAnalyzer, one image "
                  f"{r['input_size'][0]}x{r['input_size'][1]}); {r['num_images']} {r['images']} images; rank ratio = "
                  f'`{estimator}` / min(rows, channels), centred (each channel\'s mean removed) and uncentred; '
                  f'bottleneck: {own} ratio below {threshold}.', '', capped_note(r), '',
                  '| stage | stride | layers | row-capped | mean centred | mean uncentred | min centred '
                  '| min uncentred | bottleneck layers | MFLOPs |',
                  '|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|']
        for s in stage_summary(r['layers'], estimator, threshold, r.get('flops_by_module')):
            b = ', '.join(f'`{n}`' for n in s['bottlenecks']) or '-'
            flops = '-' if s['flops'] is None else f"{s['flops'] / 1e6:.1f}"
            lines.append(f"| {s['stage']} | {s['stride']} | {s['num_layers']} | {s['num_capped']} | "
                         f"{_cell(s, 'mean', 'centred')} | {_cell(s, 'mean', 'uncentred')} | "
                         f"{_cell(s, 'min', 'centred')} | {_cell(s, 'min', 'uncentred')} | {b} | {flops} |")
        lines.append('')
    return '\n'.join(lines)


def plot_profiles(results: Sequence[Dict[str, Any]], estimators: Sequence[str], path: str) -> None:
    """rank.png: rank ratio vs relative depth, one colour per model (solid: centred, dotted: uncentred),
    one panel per estimator; open circles: expand layers, crosses: row-capped layers."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    cols = min(3, len(estimators))
    rows = math.ceil(len(estimators) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, e in zip(axes.flat, estimators):
        for k, r in enumerate(results):
            color = plt.get_cmap('tab10')(k % 10)
            for c, ls in zip(CENTRINGS, ('-', ':')):
                pts = [(x['depth'], _ratio(x, c, e), x) for x in r['layers'] if x.get(c) is not None]
                if not pts:
                    continue
                ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.3, ls=ls, color=color,
                        label=f"{r['label']} ({c})")
                ex = [(d, v) for d, v, x in pts if x['kind'] == 'expand']
                if ex:
                    ax.plot(*zip(*ex), ls='none', marker='o', ms=3, mfc='none', color=color)
                cap = [(d, v) for d, v, x in pts if x.get('row_capped')]
                if cap:
                    ax.plot(*zip(*cap), ls='none', marker='x', ms=5, color=color)
        ax.set_title(e)
        ax.set_xlabel('relative depth')
        ax.set_ylabel('rank / min(rows, channels)')
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(estimators):]:
        ax.axis('off')
    axes.flat[0].legend(fontsize=6)
    r0 = results[0]
    fig.suptitle(f"rank ratio along the network ({r0['num_images']} {r0['images']} images, "
                 f"{r0['input_size'][0]}x{r0['input_size'][1]}; solid: centred, dotted: uncentred; "
                 'o: expand layers, x: row-capped)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seed_differences(a: Sequence[Dict[str, Any]], b: Sequence[Dict[str, Any]], estimator: str = 'nuclear',
                     threshold: float = 0.5) -> List[Dict[str, Any]]:
    """Two runs of the same models (e.g. ``--seed 0`` and ``--seed 1``): per model, stage and centring,
    the absolute difference of the stage's mean and of its minimum rank ratio. Models are matched by
    ``label``; stages by position (the same model has the same stages)."""
    other = {r['label']: r for r in b}
    rows = []
    for r in a:
        if r['label'] not in other:
            continue
        sa = stage_summary(r['layers'], estimator, threshold)
        sb = stage_summary(other[r['label']]['layers'], estimator, threshold)
        for x, y in zip(sa, sb):
            for c in CENTRINGS:
                if c in x['mean'] and c in y['mean']:
                    rows.append(dict(model=r['label'], stride=x['stride'], centring=c,
                                     mean_diff=abs(x['mean'][c] - y['mean'][c]),
                                     min_diff=abs(x['min'][c] - y['min'][c])))
    return rows


def seed_markdown(rows: Sequence[Dict[str, Any]], estimator: str = 'nuclear') -> str:
    """The largest stage difference per model and centring, and over everything."""
    lines = [f'Largest absolute difference between the two runs of a stage\'s mean and minimum `{estimator}` rank '
             'ratio, per model and centring:', '', '| model | centring | stages | max |mean diff| | max |min diff| |',
             '|---|---|---:|---:|---:|']
    keys = list(dict.fromkeys((r['model'], r['centring']) for r in rows))
    for m, c in keys:
        rs = [r for r in rows if (r['model'], r['centring']) == (m, c)]
        lines.append(f"| {m} | {c} | {len(rs)} | {max(r['mean_diff'] for r in rs):.3f} | "
                     f"{max(r['min_diff'] for r in rs):.3f} |")
    if rows:
        lines += ['', f"Over all: {max(max(r['mean_diff'], r['min_diff']) for r in rows):.3f}."]
    return '\n'.join(lines) + '\n'
