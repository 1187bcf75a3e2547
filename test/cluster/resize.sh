# test/cluster/resize.sh: the in-place pod resize step of the cluster test
# (sourced by run.sh; uses its log, die, retry and kubectl).
#
# kubelet's InPlacePodVerticalScaling driven through the API server, as an
# operator does it: `kubectl patch --subresource resize` of a running pod's
# CPU and memory, up and then down (a memory limit decrease included).
# kubelet calls UpdatePodSandboxResources and UpdateContainerResources;
# the step checks what the API reports (the container's status.resources,
# no pending or in-progress resize, no restart) and what the runtime did:
# the container's own cgroup on the host (CPU quota and memory limit).

# resize_cgroup_dir prints the host cgroup directory of container $1 in
# controller $2 (cgroup v1), or in the unified hierarchy.
resize_cgroup_dir() {
	local id=$1 ctrl=$2 root=/sys/fs/cgroup
	[[ -e $root/cgroup.controllers ]] || root=$root/$ctrl
	find "$root" -maxdepth 6 -type d -name "$id" -print -quit 2>/dev/null
}

# resize_cgroup_value prints the container's CPU quota in microseconds per
# 100ms period ("max" for none) or its memory limit in bytes.
resize_cgroup_value() {
	local id=$1 what=$2 dir v2=
	[[ -e /sys/fs/cgroup/cgroup.controllers ]] && v2=1
	case $what in
	cpu)
		dir=$(resize_cgroup_dir "$id" cpu)
		[[ -n $dir ]] || die "no cgroup of container $id on the host"
		if [[ -n $v2 ]]; then cut -d' ' -f1 "$dir/cpu.max"; else cat "$dir/cpu.cfs_quota_us"; fi
		;;
	memory)
		dir=$(resize_cgroup_dir "$id" memory)
		[[ -n $dir ]] || die "no cgroup of container $id on the host"
		if [[ -n $v2 ]]; then cat "$dir/memory.max"; else cat "$dir/memory.limit_in_bytes"; fi
		;;
	esac
}

# resize_to CPU_REQ CPU_LIM MEM_LIM: patch the pod's resize subresource,
# wait until kubelet reports the new limits as actuated, and check the
# host cgroup against them.
resize_to() {
	local creq=$1 clim=$2 mlim=$3 quota=$4 bytes=$5 t0 got
	t0=$(date +%s)
	kubectl patch pod resize --subresource resize -p "{\"spec\":{\"containers\":[{\"name\":\"c\",\"resources\":{\"requests\":{\"cpu\":\"$creq\",\"memory\":\"64Mi\"},\"limits\":{\"cpu\":\"$clim\",\"memory\":\"$mlim\"}}}]}}" >/dev/null ||
		die "kubectl patch --subresource resize to cpu $creq/$clim memory $mlim refused"
	# Actuated: the status reports the new limits and no resize is
	# pending (Deferred, Infeasible) or in progress.
	retry 120 sh -c "[ \"\$('$BIN_DIR/kubectl' get pod resize -o jsonpath='{.status.containerStatuses[0].resources.limits.cpu} {.status.containerStatuses[0].resources.limits.memory} {.status.conditions[?(@.type==\"PodResizePending\")].status}{.status.conditions[?(@.type==\"PodResizeInProgress\")].status}')\" = '$clim $mlim ' ]" ||
		die "resize to cpu $clim memory $mlim not actuated: status.resources $(kubectl get pod resize -o jsonpath='{.status.containerStatuses[0].resources}'), conditions $(kubectl get pod resize -o jsonpath='{.status.conditions}'); $(kubectl describe pod resize | tail -15)"
	got=$(kubectl get pod resize -o jsonpath='{.status.containerStatuses[0].resources.requests.cpu}')
	[[ $got == "$creq" ]] || die "after the resize status.resources.requests.cpu is $got, want $creq"
	got=$(resize_cgroup_value "$RESIZE_CTR" cpu)
	[[ $got == "$quota" ]] || die "after the resize to cpu $clim the container's CPU quota on the host is $got, want $quota"
	got=$(resize_cgroup_value "$RESIZE_CTR" memory)
	[[ $got == "$bytes" ]] || die "after the resize to memory $mlim the container's memory limit on the host is $got, want $bytes"
	log "resize: cpu $creq/$clim memory $mlim actuated in $(since "$t0") s (host cgroup: quota $quota, memory $bytes)"
}

resize() {
	kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: resize}
spec:
  containers:
  - name: c
    image: $WEB:v1
    resizePolicy:
    - {resourceName: cpu, restartPolicy: NotRequired}
    - {resourceName: memory, restartPolicy: NotRequired}
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {cpu: 200m, memory: 128Mi}
EOF
	kubectl wait --for=condition=Ready pod/resize --timeout=300s >/dev/null ||
		die "pod resize not Ready: $(kubectl describe pod resize | tail -20)"
	RESIZE_CTR=$(kubectl get pod resize -o jsonpath='{.status.containerStatuses[0].containerID}')
	RESIZE_CTR=${RESIZE_CTR#*://}
	[[ $(resize_cgroup_value "$RESIZE_CTR" cpu) == 20000 && $(resize_cgroup_value "$RESIZE_CTR" memory) == $((128 << 20)) ]] ||
		die "pod resize starts with quota $(resize_cgroup_value "$RESIZE_CTR" cpu) memory $(resize_cgroup_value "$RESIZE_CTR" memory), want 20000 and $((128 << 20))"
	resize_to 200m 400m 192Mi 40000 $((192 << 20))
	# Down again, below the start: CPU and a memory limit decrease.
	resize_to 50m 150m 100Mi 15000 $((100 << 20))
	local id restarts
	id=$(kubectl get pod resize -o jsonpath='{.status.containerStatuses[0].containerID}')
	restarts=$(kubectl get pod resize -o jsonpath='{.status.containerStatuses[0].restartCount}')
	[[ ${id#*://} == "$RESIZE_CTR" && $restarts == 0 ]] ||
		die "the resized container was restarted ($id, $restarts restarts): in place means the same container"
	kubectl delete pod resize --wait=true --timeout=120s >/dev/null
	log "resize: kubectl patch --subresource resize grew and shrank cpu and memory in place (same container, no restart)"
}
