"""Artist-level stratified splitting: iterative stratification, then a local search.

Every artist is an indivisible item carrying the tag counts of its labeled tracks (an (A, T)
matrix) and its number of labeled tracks. The goal is sets whose sizes match the requested
fractions and whose per-tag positive rates match the whole.

1. Iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011) on artists: repeatedly take
   the tag with the fewest positives still unassigned, and give each artist carrying it (largest
   count first) to the set that still wants the most of that tag, ties broken by the set that
   still wants the most tracks, then at random.
2. Local search: move one artist to another set, or swap two artists between sets, whenever this
   lowers the objective, the mean over sets of the mean absolute deviation (MAD) of per-tag
   positive rates from the whole, plus a penalty on set sizes (steep beyond the tolerance).
   Candidates are sampled when sets are large, so each step costs O(sample x tags).

Everything is driven by one seeded generator and fixed iteration counts: same inputs and seed,
same split.
"""
import numpy as np

SIZE_TOLERANCE = 0.005  # allowed |set share - fraction| before the steep penalty starts
STEEP_SIZE_WEIGHT = 10.0
SIZE_WEIGHT = 0.02


def iterative_stratification(counts, sizes, fractions, rng) -> np.ndarray:
    """Set index (0..S-1) of each artist; sets with fraction 0 get nobody."""
    counts = np.asarray(counts, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    n_artists = counts.shape[0]
    fractions = np.asarray(fractions, dtype=np.float64)
    active = fractions > 0
    desired_tags = fractions[:, None] * counts.sum(0)[None, :]
    desired_size = fractions * sizes.sum()
    assignment = np.full(n_artists, -1, dtype=np.int64)
    remaining = counts.sum(0)
    random_rank = np.empty(n_artists, dtype=np.int64)
    random_rank[rng.permutation(n_artists)] = np.arange(n_artists)
    unassigned = np.ones(n_artists, dtype=bool)

    def choose_set(wanted):
        score = np.where(active, wanted, -np.inf)
        best = np.flatnonzero(score == score.max())
        if len(best) > 1:
            size_score = desired_size[best]
            best = best[size_score == size_score.max()]
        return best[0] if len(best) == 1 else rng.choice(best)

    while unassigned.any():
        open_tags = np.flatnonzero(remaining > 0)
        if len(open_tags) == 0:  # artists without positives: balance sizes only
            for a in np.flatnonzero(unassigned)[np.argsort(random_rank[unassigned])]:
                s = choose_set(desired_size)
                assignment[a] = s
                desired_size[s] -= sizes[a]
            break
        tag = open_tags[np.argmin(remaining[open_tags])]
        carriers = np.flatnonzero(unassigned & (counts[:, tag] > 0))
        carriers = carriers[np.lexsort((random_rank[carriers], -counts[carriers, tag]))]
        for a in carriers:
            s = choose_set(desired_tags[:, tag])
            assignment[a] = s
            desired_tags[s] -= counts[a]
            desired_size[s] -= sizes[a]
        remaining -= counts[carriers].sum(0)
        remaining[tag] = 0  # guard against float residue
        unassigned[carriers] = False
    return assignment


class _Objective:
    """Mean over active sets of per-tag positive-rate MAD, plus the size penalty."""

    def __init__(self, counts, sizes, fractions):
        self.fractions = np.asarray(fractions, dtype=np.float64)
        self.active = self.fractions > 0
        self.n_active = int(self.active.sum())
        self.total = float(sizes.sum())
        self.rates = counts.sum(0) / self.total

    def mad(self, positives, n):
        """MAD of rate rows `positives / n` (broadcast over leading axes); empty sets score 1."""
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = positives / n[..., None]
            value = np.abs(rate - self.rates).mean(-1)
        return np.where(n > 0, value, 1.0)

    def size_penalty(self, n, s):
        """Penalty term of set `s` for sizes `n` (any shape)."""
        deviation = np.abs(n / self.total - self.fractions[s])
        return (SIZE_WEIGHT * deviation
                + STEEP_SIZE_WEIGHT * np.maximum(0.0, deviation - SIZE_TOLERANCE))

    def term(self, positives, n, s):
        """Contribution of set `s` to the objective."""
        return self.mad(positives, n) / self.n_active + self.size_penalty(n, s)


def local_search(counts, sizes, assignment, fractions, rng, *, iterations=2000, patience=25,
                 move_sample=1024, swap_sample=48) -> np.ndarray:
    """Improve `assignment` by best-improvement moves and swaps of artists (sampled candidates)."""
    counts = np.asarray(counts, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    assignment = assignment.copy()
    objective = _Objective(counts, sizes, fractions)
    sets = np.flatnonzero(objective.active)
    n_sets = len(fractions)
    positives = np.zeros((n_sets, counts.shape[1]))
    n = np.zeros(n_sets)
    for s in sets:
        members = assignment == s
        positives[s] = counts[members].sum(0)
        n[s] = sizes[members].sum()
    terms = np.array([objective.term(positives[s], n[s], s) if s in sets else 0.0
                      for s in range(n_sets)])
    failures = 0
    for _ in range(iterations):
        members = {s: np.flatnonzero(assignment == s) for s in sets}
        best_gain, best_action = 1e-12, None
        for s in sets:  # moves s -> d
            cand = members[s]
            if len(cand) > move_sample:
                cand = rng.choice(cand, move_sample, replace=False)
            if len(cand) == 0:
                continue
            new_source = objective.term(positives[s] - counts[cand], n[s] - sizes[cand], s)
            for d in sets:
                if d == s:
                    continue
                new_dest = objective.term(positives[d] + counts[cand], n[d] + sizes[cand], d)
                gain = terms[s] + terms[d] - new_source - new_dest
                i = int(np.argmax(gain))
                if gain[i] > best_gain:
                    best_gain, best_action = gain[i], ("move", cand[i], s, d)
        for si, s in enumerate(sets):  # swaps a in s <-> b in d
            for d in sets[si + 1:]:
                a = members[s]
                b = members[d]
                if len(a) == 0 or len(b) == 0:
                    continue
                if len(a) > swap_sample:
                    a = rng.choice(a, swap_sample, replace=False)
                if len(b) > swap_sample:
                    b = rng.choice(b, swap_sample, replace=False)
                delta = counts[b][None, :, :] - counts[a][:, None, :]  # (|a|, |b|, T)
                delta_n = sizes[b][None, :] - sizes[a][:, None]
                new_s = objective.term(positives[s] + delta, n[s] + delta_n, s)
                new_d = objective.term(positives[d] - delta, n[d] - delta_n, d)
                gain = terms[s] + terms[d] - new_s - new_d
                i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
                if gain[i, j] > best_gain:
                    best_gain, best_action = gain[i, j], ("swap", a[i], b[j], s, d)
        if best_action is None:
            failures += 1
            if failures >= patience:
                break
            continue
        failures = 0
        if best_action[0] == "move":
            _, artist, s, d = best_action
            _transfer(artist, s, d, counts, sizes, positives, n, assignment)
        else:
            _, artist_a, artist_b, s, d = best_action
            _transfer(artist_a, s, d, counts, sizes, positives, n, assignment)
            _transfer(artist_b, d, s, counts, sizes, positives, n, assignment)
        for changed in best_action[-2:]:
            terms[changed] = objective.term(positives[changed], n[changed], changed)
    return assignment


def _transfer(artist, source, dest, counts, sizes, positives, n, assignment):
    positives[source] -= counts[artist]
    positives[dest] += counts[artist]
    n[source] -= sizes[artist]
    n[dest] += sizes[artist]
    assignment[artist] = dest


def stratified_split(counts, sizes, fractions, seed, *, search_iterations=2000) -> np.ndarray:
    """Set index of each artist: iterative stratification, then `search_iterations` steps of
    local search at most (0 disables it)."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(f"invalid fractions {fractions.tolist()}")
    if abs(fractions.sum() - 1.0) > 1e-6:  # never rescale silently: [0.5, 0.2, 0.2] is a typo
        raise ValueError(f"fractions {fractions.tolist()} sum to {fractions.sum():g}; "
                         "they must sum to 1")
    fractions = fractions / fractions.sum()
    counts = np.asarray(counts)
    sizes = np.asarray(sizes)
    if len(sizes) == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    assignment = iterative_stratification(counts, sizes, fractions, rng)
    if search_iterations > 0:
        assignment = local_search(counts, sizes, assignment, fractions, rng,
                                  iterations=search_iterations)
    return assignment


def positive_rate_mad(labels, member_mask_by_set):
    """Per set: (per-tag positive rates, MAD from the rates of all the given sets together)."""
    union = np.zeros(labels.shape[0], dtype=bool)
    for mask in member_mask_by_set:
        union |= mask
    whole = labels[union].mean(0) if union.any() else np.zeros(labels.shape[1])
    out = []
    for mask in member_mask_by_set:
        rates = labels[mask].mean(0) if mask.any() else np.full(labels.shape[1], np.nan)
        out.append((rates, float(np.abs(rates - whole).mean()) if mask.any() else float("nan")))
    return whole, out
