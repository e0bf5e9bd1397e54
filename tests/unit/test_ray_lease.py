"""The lease's decisions: when a replica on a Ray node must fence itself, and for how long the
controller holds a dead node's replicas."""

from tiffin.backends.ray.lease import MIN_FENCE_AFTER_S, Heard, LeaseTerms, fence_reason, terms_for


def test_the_lease_is_half_the_quickest_time_ray_declares_a_node_dead() -> None:
    assert terms_for(3000, 5).fence_after_s == 7.5  # Ray's defaults: declared dead after 15 s at best
    assert terms_for(10_000, 6).fence_after_s == 30.0
    assert terms_for(500, 5).fence_after_s == MIN_FENCE_AFTER_S, "a slow answer is not a partition"


def test_a_replica_fences_when_its_node_is_declared_dead_or_the_head_goes_silent() -> None:
    terms = LeaseTerms(fence_after_s=7.5, check_s=1.0)

    assert fence_reason(terms, Heard(at=100.0, alive=True), now=107.4) is None
    assert fence_reason(terms, Heard(at=100.0, alive=True), now=107.5) == (
        "its node has not reached Ray's head for 8 s"
    )
    assert fence_reason(terms, Heard(at=100.0, alive=False), now=100.0) == "Ray's head declared its node dead"


def test_the_controller_holds_a_dead_nodes_replicas_until_they_have_asked_once_more() -> None:
    assert LeaseTerms(check_s=1.0).hold_s > 1.0
    assert LeaseTerms(check_s=3.0).hold_s > 3.0
