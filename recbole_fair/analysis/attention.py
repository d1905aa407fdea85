r"""recbole_fair.analysis.attention
###############################

Draw and measure where trained semantic-ID recommenders attend, to check FAIR's claim that
focused attention puts less weight on irrelevant history than standard attention (the command:
``recbole-fair attention``, :mod:`recbole_fair.cli.attention`).

Each checkpoint is rebuilt by :func:`recbole_fair.checkpoint.load_checkpoint`. Then, on the test
split:

* **Pictures** (``user_<token>.png``, one per sampled test user): per layer (rows) the causal
  attention matrix over the user's history, averaged over heads (``--head`` picks one), side by
  side: for a focused-attention model ``A1``, ``A2`` and the final ``A = λ1·A1 − λ2·A2``
  (diverging colours, it can be negative), for a standard-attention model its map ``A``. The last
  row of each matrix is the attention of the last position, the one that predicts the test item.
  The ``top_k`` history items most similar to the test item are marked in red on the x axis.
* **Numbers** (printed and saved to ``attention_metrics.json``), over all test users with at
  least two history items, from the last position's attention row ``w`` of every layer and head
  (for focused attention ``|A|`` renormalised to sum 1, since ``A`` may be negative):

  - ``entropy``: ``-Σ w log w / log n`` (``n`` = history length): 1 = uniform over the history,
    0 = all mass on one item. Lower = more focused.
  - ``topk_share``: the mass ``w`` puts on the ``top_k`` history items most similar to the test
    item (users with ``n > top_k``), similarity = cosine of the items' text embeddings
    (``--similarity text``, the embeddings the semantic IDs were built from; the same for every
    model) or of the model's pooled code embeddings (``--similarity codes``). Higher = more weight
    on relevant history; ``uniform_topk_share`` (mean ``top_k / n``) is the value of uniform
    attention.

  Both are means over users and heads, per layer (``*_per_layer``) and averaged over layers.

Reference:
    Longtao Xiao et al. "FAIR: Focused Attention Is All You Need for Generative Recommendation."
    arXiv 2512.11254, 2025.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from recbole_fair.checkpoint import LoadedModel, iter_test_batches

SIMILARITIES = ("text", "codes")


# ---------------------------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------------------------
def item_vectors(loaded: LoadedModel, similarity: str) -> torch.Tensor:
    r"""Unit-norm vectors of every item for the relevance similarity, ``[n_items, D]``."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got [{similarity}].")
    model = loaded.model
    device = loaded.config["device"]
    if similarity == "text":
        vectors = getattr(loaded.dataset, "item_text_embeddings", None)
        if vectors is None:
            raise ValueError(
                "similarity 'text' needs the dataset's item_text_embeddings (a semantic-ID "
                "dataset); use --similarity codes."
            )
        vectors = torch.as_tensor(vectors, dtype=torch.float32)
    else:
        items = torch.arange(model.n_items, device=device)
        with torch.no_grad():
            vectors = model.embed_tokens(model.item_tokens(items))
    return F.normalize(vectors.float().to(device), dim=-1)


def last_row_weights(A: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
    r"""Attention of each history's last position over its history, as a distribution.

    Args:
        A (torch.Tensor): attention maps, shape ``[B, H, T, T]`` (may be negative: focused
            attention's ``λ1·A1 − λ2·A2``).
        item_seq_len (torch.Tensor): history lengths ``n``, shape ``[B]``.

    Returns:
        torch.Tensor: ``|A[b, h, n-1, :n]|`` renormalised to sum 1, zero beyond ``n``,
        shape ``[B, H, T]``.
    """
    B, _, T, _ = A.shape
    rows = A[torch.arange(B, device=A.device), :, item_seq_len - 1, :].abs()  # [B, H, T]
    valid = torch.arange(T, device=A.device).unsqueeze(0) < item_seq_len.unsqueeze(1)  # [B, T]
    rows = rows * valid.unsqueeze(1)
    return rows / rows.sum(-1, keepdim=True).clamp_min(1e-12)


def normalised_entropy(w: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
    r"""``-Σ w log w / log n`` of each row, shape ``[B, H]`` (``n >= 2`` required)."""
    entropy = -torch.special.xlogy(w, w).sum(-1)  # [B, H]
    return entropy / torch.log(item_seq_len.to(w.dtype)).unsqueeze(1)


def topk_share(
    w: torch.Tensor, similarity: torch.Tensor, item_seq_len: torch.Tensor, k: int
) -> torch.Tensor:
    r"""Mass of each row on the ``k`` history positions most similar to the target.

    Args:
        w (torch.Tensor): attention distributions, shape ``[B, H, T]``.
        similarity (torch.Tensor): similarity of each history position to the target, ``[B, T]``.
        item_seq_len (torch.Tensor): history lengths, ``[B]`` (``n > k`` required).
        k (int): number of most similar positions.

    Returns:
        torch.Tensor: shape ``[B, H]``, in ``[0, 1]``.
    """
    T = w.size(-1)
    valid = torch.arange(T, device=w.device).unsqueeze(0) < item_seq_len.unsqueeze(1)
    top = similarity.masked_fill(~valid, float("-inf")).topk(k, dim=-1).indices  # [B, k]
    return w.gather(-1, top.unsqueeze(1).expand(-1, w.size(1), -1)).sum(-1)  # [B, H]


def attention_metrics(
    loaded: LoadedModel, similarity: str = "text", top_k: int = 1, max_users: int | None = None
) -> dict:
    r"""Attention entropy and top-k share of one model over the test users (see module doc).

    Returns:
        dict: ``entropy``, ``entropy_per_layer``, ``topk_share``, ``topk_share_per_layer``,
        ``uniform_topk_share``, ``n_users`` (history ≥ 2), ``n_users_topk`` (history > top_k),
        plus the model, attention type and checkpoint. Means are ``None`` without such users.
    """
    model = loaded.model
    vectors = item_vectors(loaded, similarity)
    entropy_sum: list[float] = []
    share_sum: list[float] = []
    uniform_sum, n_users, n_users_topk = 0.0, 0, 0
    for interaction in iter_test_batches(loaded):
        seq = interaction[model.ITEM_SEQ]
        lens = interaction[model.ITEM_SEQ_LEN]
        target = interaction[model.ITEM_ID]
        keep = lens >= 2  # the attention of a single-item history is trivially 1
        if max_users is not None:
            keep &= torch.cumsum(keep.long(), 0) <= max_users - n_users
        if not keep.any():
            continue
        seq, lens, target = seq[keep], lens[keep], target[keep]
        maps = model.attention_maps(seq, lens)
        seq = seq[:, : int(lens.max())]
        sims = (vectors[seq] * vectors[target].unsqueeze(1)).sum(-1)  # [B, T]
        has_topk = lens > top_k
        if not entropy_sum:
            entropy_sum, share_sum = [0.0] * len(maps), [0.0] * len(maps)
        for layer, layer_maps in enumerate(maps):
            w = last_row_weights(layer_maps["A"], lens)  # [B, H, T]
            entropy_sum[layer] += float(normalised_entropy(w, lens).mean(1).sum())
            if has_topk.any():
                share = topk_share(w[has_topk], sims[has_topk], lens[has_topk], top_k)
                share_sum[layer] += float(share.mean(1).sum())
        uniform_sum += float((top_k / lens[has_topk].double()).sum())
        n_users += int(lens.numel())
        n_users_topk += int(has_topk.sum())

    def mean(total: float, n: int) -> float | None:
        return total / n if n else None

    entropy = [mean(e, n_users) for e in entropy_sum]
    share = [mean(s, n_users_topk) for s in share_sum]
    return {
        "checkpoint": loaded.path,
        "model": loaded.config["model"],
        "attention": getattr(model, "attention", "standard"),
        "label": loaded.label,
        "n_users": n_users,
        "n_users_topk": n_users_topk,
        "entropy": sum(entropy) / len(entropy) if n_users and entropy else None,
        "entropy_per_layer": entropy,
        "topk_share": sum(share) / len(share) if n_users_topk and share else None,
        "topk_share_per_layer": share,
        "uniform_topk_share": mean(uniform_sum, n_users_topk),
    }


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------
def sample_users(loaded: LoadedModel, n_users: int = 5, user_id: str | None = None) -> list[str]:
    r"""Tokens of the users to draw: ``user_id``, else the first ``n_users`` test users (in the
    test loader's order) with at least two history items.

    Raises:
        ValueError: ``user_id`` is not a test user.
    """
    model = loaded.model
    uid_field = loaded.dataset.uid_field
    tokens: list[str] = []
    for interaction in iter_test_batches(loaded):
        users = loaded.dataset.id2token(uid_field, interaction[uid_field].cpu())
        lens = interaction[model.ITEM_SEQ_LEN].cpu()
        for token, n in zip(users, lens.tolist()):
            if user_id is not None:
                if str(token) == str(user_id):
                    return [str(token)]
            elif n >= 2:
                tokens.append(str(token))
                if len(tokens) >= n_users:
                    return tokens
    if user_id is not None:
        raise ValueError(f"user_id [{user_id}] is not a user of the test split.")
    return tokens


def user_rows(loaded: LoadedModel, tokens: Sequence[str]) -> dict[str, dict]:
    r"""History (item ids and tokens) and test item of the given users, by user token."""
    model = loaded.model
    dataset = loaded.dataset
    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    wanted = set(tokens)
    rows: dict[str, dict] = {}
    for interaction in iter_test_batches(loaded):
        users = dataset.id2token(uid_field, interaction[uid_field].cpu())
        for b, token in enumerate(users):
            token = str(token)
            if token in wanted and token not in rows:
                n = int(interaction[model.ITEM_SEQ_LEN][b])
                seq = interaction[model.ITEM_SEQ][b, :n]
                target = interaction[model.ITEM_ID][b]
                rows[token] = {
                    "seq": seq,
                    "target": target,
                    "items": [str(t) for t in dataset.id2token(iid_field, seq.cpu())],
                    "target_token": str(dataset.id2token(iid_field, target.cpu())),
                }
    return rows


def _panels(loaded: LoadedModel) -> list[str]:
    return ["A1", "A2", "A"] if loaded.focused else ["A"]


def _user_maps(loaded: LoadedModel, token: str, similarity: str, top_k: int) -> tuple | None:
    r"""``(loaded, row, maps, similar)`` of user ``token``: its history row (:func:`user_rows`),
    the model's attention maps over it and the ``top_k`` history positions most similar to the
    test item; ``None`` when the user is not in this model's test split."""
    row = user_rows(loaded, [token]).get(token)
    if row is None:
        return None
    seq = row["seq"].unsqueeze(0)
    n = seq.size(1)
    maps = loaded.model.attention_maps(seq, torch.tensor([n], device=seq.device))
    vectors = item_vectors(loaded, similarity)
    sims = vectors[row["seq"]] @ vectors[row["target"]]  # [n]
    return loaded, row, maps, sims.topk(min(top_k, n)).indices.tolist()


def _draw_map(
    fig, ax, A: torch.Tensor, title: str, signed: bool, items: list[str], similar: list[int]
) -> None:
    r"""One causal attention map ``A`` ``[n, n]`` (the upper triangle left blank), diverging
    colours when ``signed``, the history ``items`` on the axes, the ``similar`` ones in red."""
    n = len(items)
    A = A.detach().float().cpu().clone()
    A[torch.ones(n, n, dtype=torch.bool).triu(1)] = float("nan")
    if signed:
        bound = float(A.nan_to_num(0).abs().max()) or 1.0
        im = ax.imshow(A.numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound)
    else:
        im = ax.imshow(A.numpy(), cmap="viridis", vmin=0.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("history item (attended)", fontsize=7)
    ax.set_ylabel("position (query)", fontsize=7)
    # every item on the axes for short histories, else only the similar ones
    xticks = list(range(n)) if n <= 20 else sorted(similar)
    ax.set_xticks(xticks)
    ax.set_xticklabels([items[i] for i in xticks], rotation=90, fontsize=6)
    ax.set_yticks(xticks if n <= 20 else [])
    if n <= 20:
        ax.set_yticklabels(items, fontsize=6)
    for label, pos in zip(ax.get_xticklabels(), xticks):
        if pos in similar:
            label.set_color("red")


def plot_user(
    models: Sequence[LoadedModel],
    token: str,
    out_dir: Path,
    similarity: str = "text",
    top_k: int = 1,
    head: str = "mean",
) -> Path | None:
    r"""Draw the attention maps of one user for every model, side by side (one PNG).

    Returns:
        Path: the PNG, or ``None`` when no model has this user in its test split.
    """
    from matplotlib.figure import Figure

    drawn = [_user_maps(loaded, token, similarity, top_k) for loaded in models]
    drawn = [d for d in drawn if d is not None]
    if not drawn:
        return None

    n_layers = max(len(maps) for _, _, maps, _ in drawn)
    n_cols = sum(len(_panels(loaded)) for loaded, _, _, _ in drawn)
    fig = Figure(figsize=(max(6.0, 3.2 * n_cols + 1), 3.0 * n_layers + 1.0))
    axes = fig.subplots(n_layers, n_cols, squeeze=False)
    col = 0
    for loaded, row, maps, similar in drawn:
        for key in _panels(loaded):
            for layer in range(n_layers):
                ax = axes[layer][col]
                if layer >= len(maps):
                    ax.axis("off")
                    continue
                A = maps[layer][key][0]  # [H, n, n]
                A = A.mean(0) if head == "mean" else A[int(head)]
                title = f"{loaded.label}\nlayer {layer + 1} · {key}"
                signed = key == "A" and loaded.focused
                _draw_map(fig, ax, A, title, signed, row["items"], similar)
            col += 1
    target = drawn[0][1]["target_token"]
    fig.suptitle(
        f"user {token} · test item {target} · heads: {head}\nred: the {top_k} history item(s) "
        f"most similar to the test item ({similarity})",
        fontsize=9,
    )
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"user_{_safe(token)}.png"
    fig.savefig(path, dpi=100)
    return path


def plot_summary(results: Sequence[dict], out_dir: Path) -> Path:
    r"""Bar chart of the two numbers of every model (``summary.png``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3))
    axes = fig.subplots(1, 2)
    labels = [r["label"] for r in results]
    for ax, key, title in [
        (axes[0], "entropy", "last-row attention entropy / log n\n(lower = more focused)"),
        (axes[1], "topk_share", "mass on the most similar history items\n(higher = more relevant)"),
    ]:
        values = [r[key] if r[key] is not None else 0.0 for r in results]
        ax.bar(
            range(len(values)), values, color=["tab:red", "tab:blue", "tab:green"][: len(values)]
        )
        if key == "topk_share" and results and results[0]["uniform_topk_share"] is not None:
            ax.axhline(results[0]["uniform_topk_share"], color="grey", ls="--", label="uniform")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path = out_dir / "summary.png"
    fig.savefig(path, dpi=100)
    return path


def _safe(token: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in token)
