#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside (never touching) the default node on 5672.
#
#   scripts/rabbitmq-cluster.sh start     # nodes wxr1..wxr3@<host>, AMQP ports 5681..5683
#   scripts/rabbitmq-cluster.sh url       # the AMQP_URL naming the three nodes
#   scripts/rabbitmq-cluster.sh leader Q  # the node that leads quorum queue Q
#   scripts/rabbitmq-cluster.sh stop-node wxr2   # stop one node (to fail it)
#   scripts/rabbitmq-cluster.sh kill-node wxr2   # kill -9 one node (its Erlang VM)
#   scripts/rabbitmq-cluster.sh start-node wxr2  # start it again (it rejoins)
#   scripts/rabbitmq-cluster.sh stop      # stop all three and remove their data
#
# Each node has its own node name, AMQP port (568N), distribution port (2568N), config, data and
# log directories under $WXR_BASE (default /tmp/wxnotify-rabbit-cluster), and no plugins (so
# nothing binds the management port of the default node). The nodes run as the rabbitmq user
# with the machine's Erlang cookie, like the default node. No Docker.
#
# Then run wxnotify on it:
#   export AMQP_URL="$(scripts/rabbitmq-cluster.sh url)"
#   wxnotify migrate     # declares the quorum queues: replicated on all three nodes
#   wxnotify worker      # connects to the first node that answers; fails over to the next
set -euo pipefail

BASE="${WXR_BASE:-/tmp/wxnotify-rabbit-cluster}"
HOST="$(hostname -s)"
NODES=(wxr1 wxr2 wxr3)
SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
QUEUES=/usr/lib/rabbitmq/bin/rabbitmq-queues
RUN_AS=rabbitmq

if [ ! -x "$SERVER" ]; then
  echo "rabbitmq-server is not installed ($SERVER missing)" >&2
  exit 3
fi

port_of() { echo $((5680 + ${1#wxr})); }

# Runs a RabbitMQ tool as the rabbitmq user with the node's environment.
as_node() {
  local node=$1; shift
  local n=${node#wxr}
  local dir="$BASE/$node"
  runuser -u "$RUN_AS" -- env -i PATH="$PATH" HOME=/var/lib/rabbitmq \
    RABBITMQ_NODENAME="$node@$HOST" \
    RABBITMQ_NODE_PORT="$(port_of "$node")" \
    RABBITMQ_DIST_PORT="$((25680 + n))" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_PID_FILE="$dir/pid" \
    "$@"
}

ctl() { local node=$1; shift; as_node "$node" "$CTL" -n "$node@$HOST" "$@"; }

start_node() {
  local node=$1
  local dir="$BASE/$node"
  mkdir -p "$dir/mnesia" "$dir/log"
  [ -f "$dir/rabbitmq.conf" ] || cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = $(port_of "$node")
loopback_users.guest = true
CONF
  echo "[]." > "$dir/enabled_plugins"
  chown -R "$RUN_AS:$RUN_AS" "$dir"
  as_node "$node" "$SERVER" -detached
  ctl "$node" wait --timeout 120 "$dir/pid" >/dev/null
}

case "${1:-}" in
  start)
    mkdir -p "$BASE"; chown "$RUN_AS:$RUN_AS" "$BASE"
    for node in "${NODES[@]}"; do start_node "$node"; done
    for node in "${NODES[@]:1}"; do
      ctl "$node" stop_app >/dev/null
      ctl "$node" join_cluster "wxr1@$HOST" >/dev/null
      ctl "$node" start_app >/dev/null
    done
    ctl wxr1 cluster_status --formatter json | head -c 600; echo
    echo "AMQP_URL=$("$0" url)"
    ;;
  url)
    urls=()
    for node in "${NODES[@]}"; do urls+=("amqp://guest:guest@127.0.0.1:$(port_of "$node")/%2f"); done
    (IFS=,; echo "${urls[*]}")
    ;;
  leader)
    q=${2:?queue name}
    for node in "${NODES[@]}"; do
      if out=$(ctl "$node" list_queues name leader --quiet --no-table-headers 2>/dev/null); then
        echo "$out" | awk -v q="$q" '$1 == q { split($2, a, "@"); print a[1]; exit }'
        exit 0
      fi
    done
    exit 1
    ;;
  members)
    q=${2:?queue name}
    for node in "${NODES[@]}"; do
      as_node "$node" "$QUEUES" -n "$node@$HOST" quorum_status "$q" --formatter json --quiet 2>/dev/null && exit 0
    done
    exit 1
    ;;
  stop-node) ctl "${2:?node}" stop ;;
  kill-node)
    node=${2:?node}
    pid=$(cat "$BASE/$node/pid")
    kill -9 "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    ;;
  start-node) start_node "${2:?node}" ;;
  stop)
    for node in "${NODES[@]}"; do ctl "$node" stop 2>/dev/null || true; done
    rm -rf "$BASE"
    ;;
  *)
    sed -n '2,20p' "$0"; exit 2 ;;
esac
