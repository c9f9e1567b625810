"""--container and --pod: which names select a cgroup (cgroups/select.py) and what the CLI accepts."""
import pytest

from bpftools.cgroups.names import Names
from bpftools.cgroups.select import container_selects, pod_selects
from bpftools.cli.options import parse_containers, parse_pods
from bpftools.errors import UsageError

CID = "2fa2f8142affbd85260e8cd0053522a4113787e130017308701174179a59ffab"
WEB = Names(container="podman:2fa2f8142aff", runtime="podman", container_id=CID, container_name="web-1",
            image="nginx:1.27")
POD = Names(container="cri:2fa2f8142aff", runtime="cri", container_id=CID, pod="0c0e-11",
            container_name="web", pod_name="checkout-7d9c", pod_namespace="shop")


@pytest.mark.parametrize("spec,names,hit", [
    ("web-1", WEB, True),
    ("podman:2fa2f8142aff", WEB, True),          # as the container field spells it
    ("2fa2f814", WEB, True),                     # an id prefix, as docker and podman accept
    ("2FA2F814", WEB, True),
    ("2fa", WEB, False),                         # too short to mean an id
    ("web", WEB, False),                         # names match whole
    ("web-2", WEB, False),
    ("web-1", Names(), False),                   # not a container at all
    ("web-1", Names(container="podman:2fa2f8142aff", container_id=CID), False),   # not named (yet)
])
def test_container_selects(spec, names, hit):
    assert container_selects(spec, names) is hit


@pytest.mark.parametrize("spec,names,hit", [
    ("shop/checkout-7d9c", POD, True),
    ("checkout-7d9c", POD, True),                # any namespace
    ("0c0e-11", POD, True),                      # the uid, as the pod field spells it
    ("other/checkout-7d9c", POD, False),
    ("shop/checkout", POD, False),
    ("shop/checkout-7d9c", WEB, False),
    ("0c0e-11", Names(pod="0c0e-11"), True),     # a pod's own cgroup, known by its uid only
])
def test_pod_selects(spec, names, hit):
    assert pod_selects(spec, names) is hit


def test_the_cli_refuses_what_cannot_name_a_pod_or_container():
    assert parse_pods(("shop/web", "web", "0c0e-11")) == ("shop/web", "web", "0c0e-11")
    for bad in ("/web", "shop/", "a/b/c", ""):
        with pytest.raises(UsageError):
            parse_pods((bad,))
    assert parse_containers(("web-1",)) == ("web-1",)
    with pytest.raises(UsageError):
        parse_containers((" ",))
