#!/usr/bin/env bash
# kube-up.sh starts a local, real Kubernetes control plane for development:
# etcd, kube-apiserver (RBAC, static admin token), kube-controller-manager,
# kube-scheduler (all from bin/kube, see kube-build.sh) and the Stagehand pod
# simulator (bin/stagehand-podsim) as the only "kubelet". It then creates the
# namespaces backstage-sandbox and backstage-prod, each with a Backstage-like
# Deployment `backstage`, and waits for them to roll out.
#
# Idempotent: components already running are left alone; a second run only
# re-applies the manifests. Stop everything with scripts/kube-down.sh.
#
# Environment (defaults in brackets):
#   KUBE_STATE_DIR      state, logs, pid files, kubeconfig [<repo>/.stagehand/kube]
#   KUBE_APISERVER_PORT [6443]   ETCD_CLIENT_PORT [2379]   ETCD_PEER_PORT [2380]
#   KUBE_BIN_DIR        [<repo>/bin/kube]
#   PODSIM_BIN          [<repo>/bin/stagehand-podsim]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${KUBE_STATE_DIR:-$repo/.stagehand/kube}"
bin="${KUBE_BIN_DIR:-$repo/bin/kube}"
podsim="${PODSIM_BIN:-$repo/bin/stagehand-podsim}"
api_port="${KUBE_APISERVER_PORT:-6443}"
etcd_port="${ETCD_CLIENT_PORT:-2379}"
peer_port="${ETCD_PEER_PORT:-2380}"
context=stagehand-local
kubeconfig="$state/kubeconfig"

log() { echo "kube-up: $*"; }
die() { echo "kube-up: $*" >&2; exit 1; }

for b in etcd kube-apiserver kube-controller-manager kube-scheduler; do
	[[ -x "$bin/$b" ]] || die "$bin/$b missing: run \`make kube-tools\`"
done
if [[ ! -x "$podsim" ]]; then
	log "building $podsim"
	(cd "$repo" && go build -o "$podsim" ./tools/stagehand-podsim)
fi
command -v openssl >/dev/null || die "openssl is required"
command -v kubectl >/dev/null || die "kubectl is required (Debian package kubernetes-client)"

mkdir -p "$state"/{etcd,certs,logs,pids}
chmod 700 "$state"

# alive NAME: the component's recorded process group leader is still running.
alive() {
	local pidfile="$state/pids/$1.pid"
	[[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# launch NAME CMD...: start a component in its own session (so kube-down can
# signal its whole process group) with output to logs/NAME.log.
launch() {
	local name="$1"
	shift
	if alive "$name"; then
		log "$name already running (pid $(cat "$state/pids/$name.pid"))"
		return
	fi
	echo "---- $name starting at $(date -u +%FT%TZ)" >>"$state/logs/$name.log"
	setsid "$@" >>"$state/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$state/pids/$name.pid"
	log "started $name (pid $!, log $state/logs/$name.log)"
}

# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
	local what="$1" secs="$2"
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			die "timed out after ${secs}s waiting for $what (logs in $state/logs)"
		fi
		sleep 0.2
	done
}

# Throwaway credentials, made once and kept so restarts keep working tokens.
if [[ ! -f "$state/sa.key" ]]; then
	openssl genrsa -out "$state/sa.key" 2048 2>/dev/null
	openssl rsa -in "$state/sa.key" -pubout -out "$state/sa.pub" 2>/dev/null
	chmod 600 "$state/sa.key"
fi
if [[ ! -f "$state/tokens.csv" ]]; then
	echo "$(openssl rand -hex 24),stagehand-admin,stagehand-admin,\"system:masters\"" >"$state/tokens.csv"
	chmod 600 "$state/tokens.csv"
fi
token="$(cut -d, -f1 "$state/tokens.csv")"

etcd_url="http://127.0.0.1:$etcd_port"
peer_url="http://127.0.0.1:$peer_port"
launch etcd "$bin/etcd" --name=stagehand --data-dir="$state/etcd" \
	--listen-client-urls="$etcd_url" --advertise-client-urls="$etcd_url" \
	--listen-peer-urls="$peer_url" --initial-advertise-peer-urls="$peer_url" \
	--initial-cluster="stagehand=$peer_url" --log-level=warn
wait_for "etcd on $etcd_url" 30 curl -sf "$etcd_url/health"

launch kube-apiserver "$bin/kube-apiserver" \
	--etcd-servers="$etcd_url" \
	--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
	--cert-dir="$state/certs" \
	--token-auth-file="$state/tokens.csv" \
	--authorization-mode=RBAC \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="$state/sa.pub" \
	--service-account-signing-key-file="$state/sa.key" \
	--service-cluster-ip-range=10.96.0.0/16 \
	--endpoint-reconciler-type=none \
	--profiling=false
wait_for "kube-apiserver on 127.0.0.1:$api_port" 90 \
	curl -skf -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz"

# The apiserver's self-signed CA bundle (in certs/) is what the kubeconfig trusts.
kubectl config --kubeconfig="$kubeconfig" set-cluster "$context" \
	--server="https://127.0.0.1:$api_port" \
	--certificate-authority="$state/certs/apiserver.crt" --embed-certs=true >/dev/null
kubectl config --kubeconfig="$kubeconfig" set-credentials "$context" --token="$token" >/dev/null
kubectl config --kubeconfig="$kubeconfig" set-context "$context" --cluster="$context" --user="$context" >/dev/null
kubectl config --kubeconfig="$kubeconfig" use-context "$context" >/dev/null
chmod 600 "$kubeconfig"
k() { kubectl --kubeconfig="$kubeconfig" --context="$context" "$@"; }

launch kube-controller-manager "$bin/kube-controller-manager" \
	--kubeconfig="$kubeconfig" \
	--controllers=deployment-controller,replicaset-controller,serviceaccount-controller,namespace-controller,garbage-collector-controller,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller \
	--root-ca-file="$state/certs/apiserver.crt" \
	--leader-elect=false --secure-port=0
launch kube-scheduler "$bin/kube-scheduler" \
	--kubeconfig="$kubeconfig" \
	--authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
	--leader-elect=false --secure-port=0
launch stagehand-podsim "$podsim" --kubeconfig="$kubeconfig" --node-name=stagehand-sim-node

wait_for "the simulated node to be Ready" 60 \
	k wait --for=condition=Ready node/stagehand-sim-node --timeout=5s

image="${BACKSTAGE_IMAGE:-registry.local/backstage-portal/backend:prod-0000aaaa-1700000000}"
created=()
for ns in backstage-sandbox backstage-prod; do
	k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
	# Pods need the namespace's default ServiceAccount, which a controller makes.
	wait_for "ServiceAccount default in $ns" 60 k -n "$ns" get serviceaccount default
	# Created only if absent, so a re-run does not undo an image a runbook set.
	if ! k -n "$ns" get deployment backstage >/dev/null 2>&1; then
		k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backstage
  namespace: $ns
  labels:
    app.kubernetes.io/name: backstage
spec:
  replicas: 2
  progressDeadlineSeconds: 600
  selector:
    matchLabels:
      app.kubernetes.io/name: backstage
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/name: backstage
    spec:
      containers:
        - name: backstage
          image: $image
          ports:
            - name: http
              containerPort: 7007
          readinessProbe:
            httpGet:
              path: /.backstage/health/v1/readiness
              port: http
            initialDelaySeconds: 5
            periodSeconds: 10
            failureThreshold: 3
          livenessProbe:
            httpGet:
              path: /.backstage/health/v1/liveness
              port: http
            initialDelaySeconds: 60
            periodSeconds: 10
          resources:
            requests:
              cpu: 100m
              memory: 256Mi
EOF
		log "created deployment backstage in $ns ($image)"
		created+=("$ns")
	fi
done
# Only fresh Deployments are waited for: an existing one may be mid-way through
# a (deliberately failing) rollout that a runbook or test started.
for ns in "${created[@]}"; do
	k -n "$ns" rollout status deployment/backstage --timeout=120s >/dev/null ||
		die "deployment backstage in $ns did not roll out (logs in $state/logs)"
done

log "ready: export KUBECONFIG=$kubeconfig  (context $context, apiserver https://127.0.0.1:$api_port)"
