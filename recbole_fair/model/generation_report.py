r"""recbole_fair.model.generation_report
#####################################

The checks of a generative ranker's beam search over one evaluation pass
(:attr:`TIGER.generation_report <recbole_fair.model.sequential_recommender.tiger.TIGER>`):

* every batch: users, returned items, invalid generations (finished beams that are not an item)
  and duplicates (an item returned twice to one user), both 0 with the item trie (anything else is
  logged as an error), users with fewer items than the largest ``topk``, beam-search seconds;
* on a sample of users: the overlap of the beam top-k with the exact top-k (the k best items
  over every item's full sequence log-probability) and the recall of both rankings on those
  users, i.e. what the beam costs in quality.
"""

from __future__ import annotations

from logging import getLogger

import torch
from recbole.utils import set_color

from recbole_fair.model.beam_search import count_invalid


class GenerationReport:
    r"""Counts of one evaluation pass (see the module docstring).

    Args:
        beam_size (int): beams of the search (reported as is).
        topk (list of int): the ``k`` of the overlap and recall figures.
        name (str): model name in the log line.
    """

    def __init__(self, beam_size: int, topk: list[int], name: str = "TIGER") -> None:
        self.beam_size = beam_size
        self.topk = list(topk)
        self.name = name
        self.reset()

    def reset(self) -> None:
        r"""Start a new evaluation pass."""
        self.users = 0
        self.returned = 0
        self.invalid = 0
        self.duplicates = 0
        self.short_users = 0
        self.beam_seconds = 0.0
        self.exact_users = 0
        self.exact_seconds = 0.0
        self.overlap = {k: 0.0 for k in self.topk}
        self.beam_hits = {k: 0 for k in self.topk}
        self.exact_hits = {k: 0 for k in self.topk}
        self.labelled = 0
        self.logged = False

    def add_beams(self, items: torch.Tensor, scores: torch.Tensor, seconds: float) -> None:
        r"""Add a batch's beam-search result.

        Args:
            items (torch.Tensor): ``[B, W]`` item ids, best first (0 = no item).
            scores (torch.Tensor): ``[B, W]`` their scores (``-inf`` = empty beam).
            seconds (float): time the batch's search took.
        """
        returned, invalid, duplicates = count_invalid(items, scores)
        self.beam_seconds += seconds
        self.users += items.size(0)
        self.returned += returned
        self.invalid += invalid
        self.duplicates += duplicates
        if self.topk:
            short = torch.isfinite(scores).sum(1) < max(self.topk)
            self.short_users += int(short.sum())
        if invalid or duplicates:
            getLogger().error(
                f"{self.name} beam search returned {invalid} invalid and {duplicates} duplicate "
                f"items; the item trie should make both impossible."
            )

    def add_exact_check(
        self,
        beam_items: torch.Tensor,
        beam_scores: torch.Tensor,
        exact_items: torch.Tensor,
        target: torch.Tensor | None,
        seconds: float,
    ) -> None:
        r"""Add the comparison of the beam top-k with the exact top-k on ``n`` users.

        Args:
            beam_items (torch.Tensor): ``[n, K]`` beam items, best first (``K = max(topk)``).
            beam_scores (torch.Tensor): ``[n, K]`` their scores (``-inf`` = empty beam).
            exact_items (torch.Tensor): ``[n, K]`` the exact top-K, best first.
            target (torch.Tensor, optional): ``[n]`` the users' next items (recall figures).
            seconds (float): time the exact top-K took.
        """
        n = beam_items.size(0)
        alive = torch.isfinite(beam_scores)
        for k in self.topk:
            b, e = beam_items[:, :k], exact_items[:, :k]
            hit = (b.unsqueeze(2) == e.unsqueeze(1)).any(2) & alive[:, :k]  # [n, k]
            self.overlap[k] += float((hit.sum(1).float() / e.size(1)).sum())
            if target is not None:
                self.beam_hits[k] += int(((b == target.unsqueeze(1)) & alive[:, :k]).any(1).sum())
                self.exact_hits[k] += int((e == target.unsqueeze(1)).any(1).sum())
        if target is not None:
            self.labelled += n
        self.exact_users += n
        self.exact_seconds += seconds

    def as_dict(self) -> dict:
        r"""``beam_size``, ``topk``, ``users``, ``returned_items``, ``invalid_generations``,
        ``duplicate_generations``, ``invalid_generation_rate``,
        ``users_with_fewer_items_than_topk``, ``beam_search_seconds``, ``users_per_second``,
        ``exact_check_users``, ``exact_check_seconds``, ``beam_exact_overlap@k`` (mean share of
        the exact top-k found by the beam top-k) and ``sample_recall@k_beam`` /
        ``sample_recall@k_exact`` (recall of both rankings on the checked users)."""
        report = {
            "beam_size": self.beam_size,
            "topk": list(self.topk),
            "users": self.users,
            "returned_items": self.returned,
            "invalid_generations": self.invalid,
            "duplicate_generations": self.duplicates,
            "invalid_generation_rate": self.invalid / self.returned if self.returned else 0.0,
            "users_with_fewer_items_than_topk": self.short_users,
            "beam_search_seconds": self.beam_seconds,
            "users_per_second": self.users / self.beam_seconds if self.beam_seconds else None,
            "exact_check_users": self.exact_users,
            "exact_check_seconds": self.exact_seconds,
        }
        if self.exact_users:
            for k in self.topk:
                report[f"beam_exact_overlap@{k}"] = self.overlap[k] / self.exact_users
        if self.labelled:
            for k in self.topk:
                report[f"sample_recall@{k}_beam"] = self.beam_hits[k] / self.labelled
                report[f"sample_recall@{k}_exact"] = self.exact_hits[k] / self.labelled
        return report

    def log(self) -> None:
        r"""Log the report so far in one line (and remember that it was logged)."""
        self.logged = True
        report = self.as_dict()
        overlap = ", ".join(
            f"@{k} {report[f'beam_exact_overlap@{k}']:.3f}"
            for k in self.topk
            if f"beam_exact_overlap@{k}" in report
        )
        recall = ", ".join(
            f"@{k} {report[f'sample_recall@{k}_beam']:.3f}/{report[f'sample_recall@{k}_exact']:.3f}"
            for k in self.topk
            if f"sample_recall@{k}_beam" in report
        )
        getLogger().info(
            set_color(f"{self.name} generation", "pink")
            + f": beam {self.beam_size}, {report['users']} users so far, invalid generation rate "
            f"{report['invalid_generation_rate']:.4f} ({report['invalid_generations']} invalid, "
            f"{report['duplicate_generations']} duplicates)"
            + (
                f"; beam vs exact top-k overlap on {report['exact_check_users']} users: "
                f"{overlap}; their recall beam/exact: {recall} "
                f"(exact check {report['exact_check_seconds']:.1f}s)"
                if report["exact_check_users"]
                else ""
            )
        )


__all__ = ["GenerationReport"]
