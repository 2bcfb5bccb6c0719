#!/usr/bin/env bash
# Make sure Postgres and RabbitMQ answer on loopback; start them where this machine has
# them, or say in one line what to start.
set -euo pipefail

PG_HOST=${PGHOST_CHECK:-127.0.0.1}
PG_PORT=${PGPORT_CHECK:-5432}
MQ_HOST=${AMQP_HOST_CHECK:-127.0.0.1}
MQ_PORT=${AMQP_PORT_CHECK:-5672}

port_open() {  # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() {  # what host port seconds
  local deadline=$((SECONDS + $4))
  until port_open "$2" "$3"; do
    if [ $SECONDS -ge $deadline ]; then
      echo "ensure-services: $1 did not start listening on $2:$3 within $4 s" >&2
      exit 1
    fi
    sleep 0.5
  done
}

if ! port_open "$PG_HOST" "$PG_PORT"; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -n | tail -1)
    echo "ensure-services: starting PostgreSQL $version" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for PostgreSQL "$PG_HOST" "$PG_PORT" 60
  else
    echo "ensure-services: PostgreSQL is not answering on $PG_HOST:$PG_PORT; start it (e.g. 'pg_ctlcluster 15 main start')" >&2
    exit 1
  fi
fi
if command -v pg_isready >/dev/null; then
  deadline=$((SECONDS + 60))
  until pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; do
    [ $SECONDS -ge $deadline ] && { echo "ensure-services: PostgreSQL is not ready on $PG_HOST:$PG_PORT" >&2; exit 1; }
    sleep 0.5
  done
fi

if ! port_open "$MQ_HOST" "$MQ_PORT"; then
  if command -v rabbitmq-server >/dev/null; then
    echo "ensure-services: starting RabbitMQ" >&2
    rabbitmq-server -detached || true
    wait_for RabbitMQ "$MQ_HOST" "$MQ_PORT" 120
  else
    echo "ensure-services: RabbitMQ is not answering on $MQ_HOST:$MQ_PORT; start it (e.g. 'rabbitmq-server -detached')" >&2
    exit 1
  fi
fi
