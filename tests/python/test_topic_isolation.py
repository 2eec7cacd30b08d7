"""Topics stay with the agents that take part in them, across real processes (bench/topics.py
at CI size; ``make bench-topics`` runs it at full size): every agent is its own OS process,
built as the README shows, and what crossed the sockets is read from the agents' counters."""

from pathlib import Path

from processes import run_bench

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "bench" / "topics.py"


def test_agents_on_another_topic_receive_none_of_its_bytes() -> None:
    # 6 agents: 3 on "a", 3 on "b"; an "a" agent publishes 200 x 1 KiB on "a".
    _, figures = run_bench(BENCH, "--scenario", "split", "--messages", "200", "--burst", "50")
    assert all(share == 1.0 for share in figures["delivered"].values()), figures
    assert figures["reference_bytes"] >= 200 * 1024, figures
    # With one swarm for the network each "b" agent got ~100% of a subscriber's bytes.
    assert figures["b_foreign_pct_max"] <= 2.0, figures


def test_many_topics_few_subscribers_each_deliver_to_their_own_only() -> None:
    # 8 agents, 4 topics of 3 random subscribers; random agents publish on random topics.
    _, figures = run_bench(
        BENCH,
        "--scenario", "scale", "--agents", "8", "--topics", "4", "--subscribers", "3",
        "--settle", "2", "--idle", "1", "--rounds", "20", "--gap-ms", "50",
    )  # fmt: skip
    assert figures["delivered"] == 1.0, figures
    assert figures["foreign_over_own_mean"] == 0.0, figures
    assert figures["queue_drops"] == 0, figures
