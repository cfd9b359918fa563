"""Association rules with mlxtend 0.25.0's semantics, vectorised and memory-bounded.

Like mlxtend, every split of every itemset of length >= 2 into a non-empty antecedent and
consequent is a candidate, scored with mlxtend's own float formulas (supports are
``count / N``), and kept when ``metric >= min_threshold``. Unlike mlxtend, candidates are
enumerated with numpy, a block of itemsets of one length at a time: subset keys are XORs of
64-bit random item keys (Zobrist hashing), the supports of antecedents and consequents come
from a sorted key array by binary search, and only the rules that pass are turned into
label lists. The keys of the looked-up itemsets are checked to be distinct, and every
antecedent and consequent of a frequent itemset is itself frequent, so lookups are exact.

Closed and maximal itemsets: rules are the splits of the target itemsets only, with the
supports of antecedents and consequents taken from every frequent itemset (the itemsets'
``all_counts``, or mined again from their ``source`` transactions with the same thresholds);
they equal mlxtend's rules over all itemsets restricted to rules whose union is a target
itemset.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fpgrowth_dagster.mining.errors import BudgetExceeded, MiningError, SettingsError
from fpgrowth_dagster.mining.itemsets import FrequentItemsets

METRICS = (
    "antecedent support",
    "consequent support",
    "support",
    "confidence",
    "lift",
    "representativity",
    "leverage",
    "conviction",
    "zhangs_metric",
    "jaccard",
    "certainty",
    "kulczynski",
)
RULE_COLUMNS = ["antecedents", "consequents", *METRICS]
# Candidate splits enumerated per numpy block, and the default cap on all candidates of one call.
BLOCK_CELLS = 1 << 19
MAX_CANDIDATES = 1 << 32


def metric_values(name: str, sAC: np.ndarray, sA: np.ndarray, sC: np.ndarray, num: float) -> np.ndarray:
    """One metric, with mlxtend 0.25.0's exact floating-point operations and edge cases."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "antecedent support":
            return sA
        if name == "consequent support":
            return sC
        if name == "support":
            return sAC
        conf = (sAC * num) / (sA * num)
        if name == "confidence":
            return conf
        if name == "lift":
            return conf / sC
        if name == "representativity":
            return np.broadcast_to(np.float64(num) / num, np.broadcast(sAC, sA, sC).shape)
        leverage = sAC - sA * sC
        if name == "leverage":
            return leverage
        if name == "conviction":
            conf = np.broadcast_to(conf, np.broadcast(sAC, sA, sC).shape)
            sCb = np.broadcast_to(sC, conf.shape)
            out = np.full(conf.shape, np.inf)
            low = conf < 1.0
            out[low] = (1.0 - sCb[low]) / (1.0 - conf[low])
            return out
        if name == "zhangs_metric":
            denominator = np.maximum(sAC * (1 - sA), sA * (sC - sAC))
            return np.where(denominator == 0, 0, leverage / denominator)
        if name == "jaccard":
            return sAC / (sA + sC - sAC)
        if name == "certainty":
            return np.where(1 - sC == 0, 0, (conf - sC) / (1 - sC))
        if name == "kulczynski":
            return (conf + (sAC * num) / (sC * num)) / 2
    raise SettingsError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")


class SupportIndex:
    """Exact support lookup of itemsets of integer item codes through 64-bit Zobrist keys."""

    def __init__(self, n_items: int, groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        for seed in range(1, 100):
            rng = np.random.default_rng(seed)
            self.item_keys = rng.integers(1, np.iinfo(np.uint64).max, size=max(n_items, 1), dtype=np.uint64)
            keys = np.concatenate([self.keys_of(codes) for codes, _ in groups]) if groups else np.zeros(0, np.uint64)
            values = np.concatenate([v for _, v in groups]) if groups else np.zeros(0)
            order = np.argsort(keys, kind="stable")
            keys, values = keys[order], values[order]
            if not len(keys) or not (keys[1:] == keys[:-1]).any():
                self.keys, self.values = keys, values
                return
        raise MiningError("could not build distinct itemset keys")  # pragma: no cover - 2**-64 odds

    def keys_of(self, codes: np.ndarray) -> np.ndarray:
        return np.bitwise_xor.reduce(self.item_keys[codes], axis=1) if codes.shape[1] else np.zeros(len(codes), np.uint64)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values, found) for an array of keys."""
        if not len(self.keys):
            return np.zeros(keys.shape), np.zeros(keys.shape, bool)
        pos = np.searchsorted(self.keys, keys)
        np.minimum(pos, len(self.keys) - 1, out=pos)
        return self.values[pos], self.keys[pos] == keys


@dataclass
class RuleArrays:
    """Rules that passed, as positions into the itemset blocks (nothing materialised yet)."""

    block: np.ndarray  # which (codes, rows, sAC) block
    row: np.ndarray  # row inside the block
    mask: np.ndarray  # antecedent positions as a bit mask over the itemset's positions
    sAC: np.ndarray
    sA: np.ndarray
    sC: np.ndarray


def enumerate_rules(
    blocks: Sequence[tuple[np.ndarray, np.ndarray]],
    index: SupportIndex,
    num: float,
    metric: str,
    min_threshold: float,
    *,
    max_rules: int | None,
    support_only: bool = False,
    on_missing: Callable[[np.ndarray, int], None] | None = None,
) -> RuleArrays:
    """Score every antecedent/consequent split of each block of equal-length itemsets.

    ``blocks`` holds (codes (n, k), sAC (n,)) pairs; the positions of ``codes`` define the
    bit masks. Raises BudgetExceeded as soon as more than ``max_rules`` rules pass.
    """
    parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    kept = 0
    for b, (codes, sAC_all) in enumerate(blocks):
        n, k = codes.shape
        if k < 2 or n == 0:
            continue
        low = min(k, 18)
        width = 1 << low
        step = max(1, BLOCK_CELLS // width)
        low_masks = np.arange(width, dtype=np.int64)
        full = (1 << k) - 1
        for start in range(0, n, step):
            item_keys = index.item_keys[codes[start : start + step]]
            sAC = sAC_all[start : start + step]
            total = np.bitwise_xor.reduce(item_keys, axis=1)
            low_keys = np.zeros((len(item_keys), width), np.uint64)
            for j in range(low):
                low_keys[:, 1 << j : 2 << j] = low_keys[:, : 1 << j] ^ item_keys[:, j : j + 1]
            for high in range(1 << (k - low)):
                high_key = np.zeros(len(item_keys), np.uint64)
                for j in range(k - low):
                    if high >> j & 1:
                        high_key ^= item_keys[:, low + j]
                masks = (high << low) | low_masks
                ante = low_keys ^ high_key[:, None]
                valid = (masks != 0) & (masks != full)
                if support_only:
                    sA = sC = np.zeros(ante.shape)
                    passed = (sAC[:, None] >= min_threshold) & valid
                else:
                    sA, found_a = index.lookup(ante)
                    sC, found_c = index.lookup(total[:, None] ^ ante)
                    missing = valid & ~(found_a & found_c)
                    if missing.any():
                        r, c = np.nonzero(missing)
                        if on_missing is None:
                            raise MiningError("an antecedent or consequent of a frequent itemset has no support")
                        on_missing(codes[start + r[0]], int(masks[c[0]]))
                    score = metric_values(metric, sAC[:, None], sA, sC, num)
                    passed = (score >= min_threshold) & valid
                r, c = np.nonzero(passed)
                if not len(r):
                    continue
                kept += len(r)
                if max_rules is not None and kept > max_rules:
                    raise BudgetExceeded(
                        f"more than {max_rules:,} association rules pass {metric} >= {min_threshold}, over the "
                        f"budget max_rules={max_rules:,}; raise min_threshold, mine with a higher min_support "
                        f"or min_count or a smaller max_len, or raise max_rules"
                    )
                parts.append((b, start + r, masks[c], sAC[r], sA[r, c] if sA.ndim else sA, sC[r, c] if sC.ndim else sC))
    if not parts:
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
        return RuleArrays(empty_i, empty_i, empty_i, empty_f, empty_f, empty_f)
    return RuleArrays(
        np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts]),
        *(np.concatenate([p[i] for p in parts]) for i in range(1, 6)),
    )


def split_codes(codes: np.ndarray, masks: np.ndarray) -> tuple[list[list], list[list]]:
    """Antecedent and consequent positions' values of each rule, as Python lists, in position order."""
    k = codes.shape[1]
    bits = ((masks[:, None] >> np.arange(k)) & 1).astype(bool)
    out: list[list[list]] = [[], []]
    for side, chosen in enumerate((bits, ~bits)):
        size = chosen.sum(axis=1)
        lists: list[list] = [[] for _ in range(len(masks))]
        for p in np.unique(size):
            where = np.nonzero(size == p)[0]
            values = codes[where][chosen[where]].reshape(len(where), int(p)).tolist()
            for i, v in zip(where.tolist(), values):
                lists[i] = v
        out[side] = lists
    return out[0], out[1]


def rule_order(rows: np.ndarray, masks: np.ndarray, k: np.ndarray) -> np.ndarray:
    """mlxtend's order inside an itemset: larger antecedents first, then combinations order."""
    popcount = np.zeros(len(masks), np.int64)
    reverse = np.zeros(len(masks), np.int64)
    for j in range(int(k.max()) if len(k) else 0):
        bit = (masks >> j) & 1
        popcount += bit
        reverse |= np.where(j < k, bit << np.maximum(k - 1 - j, 0), 0)
    return np.lexsort((-reverse, -popcount, rows))


def _blocks_of(itemsets: Sequence[tuple], values: np.ndarray, code_of: dict) -> tuple[list, list]:
    """Group itemsets by length into (codes, values) blocks plus their global row numbers."""
    by_len: dict[int, list[int]] = {}
    for row, s in enumerate(itemsets):
        by_len.setdefault(len(s), []).append(row)
    blocks, rows = [], []
    for k in sorted(by_len):
        idx = np.asarray(by_len[k], np.int64)
        flat = np.fromiter((code_of[i] for r in by_len[k] for i in itemsets[r]), np.int64, count=len(idx) * k)
        blocks.append((flat.reshape(len(idx), k), np.asarray(values, np.float64)[idx]))
        rows.append(idx)
    return blocks, rows


def _base_of(itemsets: FrequentItemsets) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Every frequent itemset with its count: the lookup table for antecedents and consequents."""
    if itemsets.target == "all":
        return itemsets.itemsets, np.asarray(itemsets.counts)
    if itemsets.all_counts is not None:
        return list(itemsets.all_counts), np.fromiter(itemsets.all_counts.values(), np.int64, len(itemsets.all_counts))
    if itemsets.source is None or itemsets.mining_options is None:
        raise SettingsError(
            f"rules over {itemsets.target} itemsets need the supports of their subsets: "
            "give FrequentItemsets.all_counts or source transactions"
        )
    from fpgrowth_dagster.mining.engines import mine_itemsets

    every = mine_itemsets(itemsets.source, target="all", engine="fim", **itemsets.mining_options)
    return every.itemsets, np.asarray(every.counts)


def association_rules(
    itemsets: FrequentItemsets,
    *,
    metric: str = "confidence",
    min_threshold: float = 0.8,
    max_rules: int | None = None,
    max_candidates: int | None = MAX_CANDIDATES,
) -> pd.DataFrame:
    """Rules of every split of every itemset (length >= 2) with ``metric >= min_threshold``.

    Columns: antecedents, consequents (sorted label lists), then mlxtend's 12 metrics.
    Rows follow the itemsets' order, then larger antecedents first, then combinations order.
    ``max_rules`` bounds the rules kept; ``max_candidates`` bounds the splits enumerated.
    """
    if metric not in METRICS:
        raise SettingsError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if max_rules is not None and max_rules < 0:
        raise SettingsError(f"max_rules must be >= 0 or None, got {max_rules!r}")
    n = itemsets.n_transactions
    lengths = np.bincount(np.fromiter(map(len, itemsets.itemsets), np.int64, len(itemsets.itemsets)))
    candidates = sum(int(c) * ((1 << k) - 2) for k, c in enumerate(lengths.tolist()) if k >= 2)
    if max_candidates is not None and candidates > max_candidates:
        raise BudgetExceeded(
            f"{len(itemsets):,} {itemsets.target} itemsets have {candidates:,} antecedent/consequent splits, "
            f"over the limit of {max_candidates:,}; mine with a higher min_support or min_count or a smaller max_len"
        )
    if candidates == 0 or n == 0:
        return _empty_rules()
    base_sets, base_counts = _base_of(itemsets)
    labels = sorted({s[0] for s in base_sets if len(s) == 1})
    code_of = {label: c for c, label in enumerate(labels)}
    base_blocks, base_rows = _blocks_of(base_sets, base_counts / float(n), code_of)
    index = SupportIndex(len(labels), base_blocks)
    if base_sets is itemsets.itemsets:
        blocks, block_rows = base_blocks, base_rows
    else:
        blocks, block_rows = _blocks_of(itemsets.itemsets, np.asarray(itemsets.counts) / float(n), code_of)
    found = enumerate_rules(blocks, index, n, metric, float(min_threshold), max_rules=max_rules)
    if not len(found.row):
        return _empty_rules()
    global_rows = np.concatenate(block_rows)[np.cumsum([0] + [len(r) for r in block_rows])[found.block] + found.row]
    lengths = np.asarray([blocks[b][0].shape[1] for b in range(len(blocks))])[found.block]
    order = rule_order(global_rows, found.mask, lengths)
    label_array = np.asarray(labels, dtype=object)
    with _gc_paused():
        return _materialise(blocks, found, order, label_array, n)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of small label lists trigger the cyclic collector over and over: pause it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _materialise(blocks: list, found: RuleArrays, order: np.ndarray, label_array: np.ndarray, n: int) -> pd.DataFrame:
    """Label lists and metric columns of the rules that passed, in output order."""
    antecedents: list = [None] * len(order)
    consequents: list = [None] * len(order)
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    for b in np.unique(found.block):
        sel = np.nonzero(found.block == b)[0]
        codes = label_array[blocks[b][0][found.row[sel]]]
        ante, cons = split_codes(codes, found.mask[sel])
        for p, a, c in zip(position[sel].tolist(), ante, cons):
            antecedents[p], consequents[p] = a, c
    sAC, sA, sC = found.sAC[order], found.sA[order], found.sC[order]
    data: dict[str, object] = {"antecedents": antecedents, "consequents": consequents}
    for name in METRICS:
        data[name] = np.asarray(metric_values(name, sAC, sA, sC, n), dtype=np.float64)
    return pd.DataFrame(data, columns=RULE_COLUMNS)


def _empty_rules() -> pd.DataFrame:
    data: dict[str, object] = {"antecedents": pd.Series([], dtype=object), "consequents": pd.Series([], dtype=object)}
    data.update({name: pd.Series([], dtype=np.float64) for name in METRICS})
    return pd.DataFrame(data, columns=RULE_COLUMNS)
