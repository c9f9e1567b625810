"""Names from cgroup paths: tables of real paths.

The ids, pod uids and layouts are as quoted in public material (facts only):
systemd's user@.service(5) example, Kubernetes issues #36807/#62896/#95488,
minikube #11280 (cri-o), netdata #4868 (containerd), OpenShift MicroShift
#697 (crio-conmon), podman #507/#6400, coroot-node-agent #251 (podman
--cgroups=split), opentelemetry-java #4507 (containerd on a v1 host),
Talos #3950 and cadvisor #2540 (kubelet cgroupfs driver), a /proc/<pid>/cgroup
of a docker cgroupfs-driver container.
"""
import pytest

from bpftools.cgroups.names import Names, display_name, names_from_path, short_id

DOCKER_ID = "34048520ee4dcc79b692911aeb87c104e8f3d9b5a99aa269fa1f2b5a3fcfd1fd"
K8S_DOCKER_ID = "57353a2ab1bd38bc5b00500bd4dc9795b6bf0e6e3a15479c474ccb3be605cef8"
GUARANTEED_DOCKER_ID = "32cc26191dad2120ae02fbe32e3cb962c291591439f28765da6c2b8dd28d7e48"
CONTAINERD_ID = "2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36"
STATIC_POD_CONTAINERD_ID = "2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5"
V1_CONTAINERD_ID = "ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459"
MINIKUBE_ID = "d5d9ee5cf5ec9520d182418b737fb11f3aa6b739e91d7cb6ecd6786f6a2bcbd1"
CRIO_ID = "0765f197c9158576f202e50498b488cd0d2b022fb2462b0a629f214bb51cd57d"
CONMON_ID = "e0c85fe7644a858988d9687c2e0736a7d31922740d0f3e001c6b2e0aa7e5f528"
PODMAN_ID = "0411a2a82311fbc65b137ca550d5f7e6b6863bc734759be2f515b0b67062d49a"
PAYLOAD_ID = "cc316b3065798e96c30dcfc708f7a7dda1b2d78e552364002d2e49a3100ef3ef"
CGROUPFS_ID = "a684bbdd0c4b6937b5ece9713bed661305ab0de570eb12b7c28a032aaf602937"

SYSTEMD = [
    ("/system.slice/nginx.service", Names(unit="nginx.service", slice="system.slice")),
    ("/user.slice/user-1000.slice/session-2.scope", Names(unit="session-2.scope", slice="user-1000.slice")),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo@abc.service",
     Names(unit="app-foo@abc.service", slice="app.slice")),
    ("/user.slice/user-1000.slice/user@1000.service/gnome-terminal-server.service",
     Names(unit="gnome-terminal-server.service", slice="user-1000.slice")),
    ("/user.slice/user-1000.slice/user@1000.service", Names(unit="user@1000.service", slice="user-1000.slice")),
    ("/init.scope", Names(unit="init.scope")),
    # seen under systemd 252 in the kernel matrix's guest (tests/privileged/systemd_checks.py)
    ("/system.slice/fstrace-run-4100-a1b2c3.scope", Names(unit="fstrace-run-4100-a1b2c3.scope", slice="system.slice")),
    ("/system.slice/fstrace-test-0123456789.service",
     Names(unit="fstrace-test-0123456789.service", slice="system.slice")),
    ("/system.slice/system-modprobe.slice/modprobe@fuse.service",
     Names(unit="modprobe@fuse.service", slice="system-modprobe.slice")),
    ("/system.slice/systemd-journald.socket", Names(unit="systemd-journald.socket", slice="system.slice")),
    ("/system.slice/nginx.service/worker", Names(unit="nginx.service", slice="system.slice")),
    ("/user.slice", Names(slice="user.slice")),
    ("/", Names()),
]

CONTAINERS = [
    (f"/docker/{DOCKER_ID}",
     Names(container="docker:34048520ee4d", runtime="docker", container_id=DOCKER_ID)),
    (f"/system.slice/docker-{DOCKER_ID}.scope",
     Names(unit=f"docker-{DOCKER_ID}.scope", slice="system.slice", container="docker:34048520ee4d",
           runtime="docker", container_id=DOCKER_ID)),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pode4193b51_e5f8_4348_90b3_5423cb74e0d1.slice/"
     f"docker-{K8S_DOCKER_ID}.scope",
     Names(unit=f"docker-{K8S_DOCKER_ID}.scope",
           slice="kubepods-burstable-pode4193b51_e5f8_4348_90b3_5423cb74e0d1.slice", container="docker:57353a2ab1bd", runtime="docker", container_id=K8S_DOCKER_ID,
           pod="e4193b51-e5f8-4348-90b3-5423cb74e0d1")),
    (f"/kubepods.slice/kubepods-pod10231429_28f6_11e8_8903_74dbd1a06fe0.slice/docker-{GUARANTEED_DOCKER_ID}.scope",
     Names(unit=f"docker-{GUARANTEED_DOCKER_ID}.scope", slice="kubepods-pod10231429_28f6_11e8_8903_74dbd1a06fe0.slice",
           container="docker:32cc26191dad", runtime="docker", container_id=GUARANTEED_DOCKER_ID,
           pod="10231429-28f6-11e8-8903-74dbd1a06fe0")),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice/"
     f"cri-containerd-{CONTAINERD_ID}.scope",
     Names(unit=f"cri-containerd-{CONTAINERD_ID}.scope",
           slice="kubepods-burstable-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice",
           container="containerd:2032491dcae3", runtime="containerd", container_id=CONTAINERD_ID,
           pod="55c6c714-b240-4dec-9a45-57b61696ab6e")),
    # a static pod: its uid is a 32-hex hash, no dashes
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice/"
     f"cri-containerd-{STATIC_POD_CONTAINERD_ID}.scope",
     Names(unit=f"cri-containerd-{STATIC_POD_CONTAINERD_ID}.scope",
           slice="kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice",
           container="containerd:2884d57c0e10", runtime="containerd", container_id=STATIC_POD_CONTAINERD_ID,
           pod="8daa50c3a64c9ff60bb9eab7b44b56fd")),
    ("/system.slice/containerd.service/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice"
     f":cri-containerd:{V1_CONTAINERD_ID}",
     Names(unit="containerd.service", slice="system.slice", container="containerd:ee4b20e90ac7",
           runtime="containerd", container_id=V1_CONTAINERD_ID, pod="0125ec2f-b64a-4868-8f5b-94b56cbab864")),
    # minikube: cri-o inside a docker container; the innermost container wins
    (f"/docker/{MINIKUBE_ID}/kubepods.slice/kubepods-besteffort.slice/"
     f"kubepods-besteffort-pod2cde702b_a0cf_438d_a228_fb164e54434b.slice/crio-{CRIO_ID}.scope",
     Names(unit=f"crio-{CRIO_ID}.scope", slice="kubepods-besteffort-pod2cde702b_a0cf_438d_a228_fb164e54434b.slice",
           container="crio:0765f197c915", runtime="crio", container_id=CRIO_ID,
           pod="2cde702b-a0cf-438d-a228-fb164e54434b")),
    (f"/system.slice/crio-conmon-{CONMON_ID}.scope",
     Names(unit=f"crio-conmon-{CONMON_ID}.scope", slice="system.slice", container="crio-conmon:e0c85fe7644a",
           runtime="crio-conmon", container_id=CONMON_ID)),
    (f"/machine.slice/libpod-{PODMAN_ID}.scope",
     Names(unit=f"libpod-{PODMAN_ID}.scope", slice="machine.slice", container="podman:0411a2a82311",
           runtime="podman", container_id=PODMAN_ID)),
    (f"/machine.slice/libpod-conmon-{PODMAN_ID}.scope",
     Names(unit=f"libpod-conmon-{PODMAN_ID}.scope", slice="machine.slice",
           container="podman-conmon:0411a2a82311", runtime="podman-conmon", container_id=PODMAN_ID)),
    # a sub-cgroup inside the container keeps the container
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{PODMAN_ID}.scope/container",
     Names(unit=f"libpod-{PODMAN_ID}.scope", slice="user.slice", container="podman:0411a2a82311",
           runtime="podman", container_id=PODMAN_ID)),
    (f"/system.slice/app_name.service/libpod-payload-{PAYLOAD_ID}",
     Names(unit="app_name.service", slice="system.slice", container="podman:cc316b306579",
           runtime="podman", container_id=PAYLOAD_ID)),
    (f"/kubepods/besteffort/pod18d34ce4-50c7-452c-9df8-53c4a3fdf363/{CGROUPFS_ID}",
     Names(container="cri:a684bbdd0c4b", runtime="cri", container_id=CGROUPFS_ID,
           pod="18d34ce4-50c7-452c-9df8-53c4a3fdf363")),
    # guaranteed pods sit directly under /kubepods
    (f"/kubepods/pod18d34ce4-50c7-452c-9df8-53c4a3fdf363/{CGROUPFS_ID}",
     Names(container="cri:a684bbdd0c4b", runtime="cri", container_id=CGROUPFS_ID,
           pod="18d34ce4-50c7-452c-9df8-53c4a3fdf363")),
    ("/kubepods/burstable/pod1ff47ee6-9685-4726-ac6f-0ff070c452d6",
     Names(pod="1ff47ee6-9685-4726-ac6f-0ff070c452d6")),
]

NOT_CONTAINERS = [
    ("/fstrace-test-1a2b3c/a", Names()),
    ("/docker", Names()),
    ("/system.slice/docker.service", Names(unit="docker.service", slice="system.slice")),
    ("/system.slice/docker-abc123.scope", Names(unit="docker-abc123.scope", slice="system.slice")),
    (f"/system.slice/docker-{DOCKER_ID.upper()}.scope",
     Names(unit=f"docker-{DOCKER_ID.upper()}.scope", slice="system.slice")),
    (f"/elsewhere/{DOCKER_ID}", Names()),                  # a bare id outside /docker or a pod
    (f"/pod18d34ce4-50c7-452c-9df8-53c4a3fdf363/{CGROUPFS_ID}", Names()),  # pod<uid> outside kubepods
    (f"/docker/{DOCKER_ID}/init", Names(container="docker:34048520ee4d", runtime="docker",
                                        container_id=DOCKER_ID)),
]


@pytest.mark.parametrize("path, names", SYSTEMD + CONTAINERS + NOT_CONTAINERS)
def test_names_from_path(path, names):
    assert names_from_path(path) == names


@pytest.mark.parametrize("path, shown", [
    ("/system.slice/nginx.service", "nginx.service"),
    ("/system.slice/nginx.service/worker", "nginx.service"),
    ("/user.slice/user-1000.slice/session-2.scope", "session-2.scope"),
    (f"/system.slice/docker-{DOCKER_ID}.scope", "docker:34048520ee4d"),
    (f"/docker/{DOCKER_ID}", "docker:34048520ee4d"),
    ("/kubepods/burstable/pod1ff47ee6-9685-4726-ac6f-0ff070c452d6", "pod:1ff47ee6-9685-4726-ac6f-0ff070c452d6"),
    ("/kubepods.slice/kubepods-burstable.slice", "/kubepods.slice/kubepods-burstable.slice"),
    ("/user.slice", "/user.slice"),
    ("/fstrace-test-1a2b3c/a", "/fstrace-test-1a2b3c/a"),
    ("/", "/"),
])
def test_display_name(path, shown):
    assert display_name(path) == shown
    assert display_name(path, names_from_path(path)) == shown


def test_display_name_uses_the_names_it_is_given():
    assert display_name("/x", Names(unit="given.service")) == "given.service"


def test_short_id_is_what_docker_ps_shows():
    assert short_id(DOCKER_ID) == "34048520ee4d"


def test_display_name_prefers_the_runtimes_names():
    path = "/libpod_parent/libpod-" + PODMAN_ID
    named = Names(container="podman:" + PODMAN_ID[:12], runtime="podman", container_id=PODMAN_ID,
                  container_name="web-1", image="nginx:1.27")
    assert display_name(path, named) == "web-1"
    k8s = Names(container="cri:" + CONTAINERD_ID[:12], container_id=CONTAINERD_ID, pod="1234",
                container_name="web", pod_name="checkout-7d9c", pod_namespace="shop")
    assert display_name("/x", k8s) == "shop/checkout-7d9c/web"
    assert k8s.pod_label == "shop/checkout-7d9c"
    sandbox = Names(pod="1234", pod_name="checkout-7d9c", pod_namespace="shop")
    assert display_name("/x", sandbox) == "pod:shop/checkout-7d9c"
    assert Names(pod="1234").pod_label == "1234" and Names().pod_label is None
