import asyncio

from regmirror.cache.single_flight import Leads

from tests.flowutil import reverse_flow

D = "sha256:" + "a" * 64
ROUTE = {"registry": "docker.io", "name": "library/x"}


async def test_misses_wait_for_the_leader_then_look_again():
    leads = Leads()
    leader, follower = reverse_flow("GET", "/a"), reverse_flow("GET", "/b")
    assert await leads.wait_or_lead(leader, ROUTE, D, "anonymous", 5) is False  # it leads
    waiting = asyncio.create_task(leads.wait_or_lead(follower, ROUTE, D, "anonymous", 5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    leads.end(follower, D)  # not the leader: nothing ends
    await asyncio.sleep(0.01)
    assert not waiting.done()
    leads.end(leader, D)
    assert await waiting is True
    # the lead is over: the next miss leads anew
    assert await leads.wait_or_lead(follower, ROUTE, D, "anonymous", 5) is False


async def test_no_waiting_across_repositories_or_for_private_content_or_forever():
    leads = Leads()
    private = reverse_flow("GET", "/p")
    assert await leads.wait_or_lead(private, ROUTE, D, "client", 5) is False
    other = {"registry": "docker.io", "name": "library/y"}
    assert await leads.wait_or_lead(reverse_flow("GET", "/o"), other, D, "anonymous", 5) is False
    same = reverse_flow("GET", "/s")
    assert await leads.wait_or_lead(same, ROUTE, D, "anonymous", 5) is False  # client's: no
    leads.end(private, D)
    slow = reverse_flow("GET", "/slow")
    assert await leads.wait_or_lead(slow, ROUTE, D, "anonymous", 5) is False
    # a leader that never answers holds the others for the bound only
    assert await leads.wait_or_lead(reverse_flow("GET", "/w"), ROUTE, D, "anonymous", 0.05)
