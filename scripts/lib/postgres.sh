# shellcheck shell=bash
# PostgreSQL for sam and its tests. Needs messages.sh and apt.sh sourced first.
#
# ensure_postgres leaves DATABASE_URL exported and pointing at a server that accepts it:
#   - DATABASE_URL already set: used exactly as given, after waiting for it.
#   - root: the machine's cluster (Debian's pg_ctlcluster), started if needed, with a role
#     and a database named sam (password sam).
#   - not root: a private cluster under ${SAM_DATA_DIR:-.data}/postgres, unless the
#     machine's server already lets sam:sam in.
# Migrations are not applied here: sam applies them itself when it starts.

# How long to wait for a server to accept connections, in seconds.
SAM_PG_WAIT_SECS=${SAM_PG_WAIT_SECS:-30}

# Without this a server behind a dropped route would hang every psql call.
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}

ensure_postgres() {
    if [[ -n ${DATABASE_URL:-} ]]; then
        say "PostgreSQL: using DATABASE_URL=$(redact_url "$DATABASE_URL")"
        ensure_postgres_client
        wait_for_postgres "$DATABASE_URL"
    elif is_root; then
        ensure_system_cluster
    else
        ensure_user_cluster
    fi
    export DATABASE_URL
}

# redact_url URL: the URL with its password, if any, replaced by ***.
redact_url() {
    sed -E \
        -e 's#^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*):[^/@]*@#\1:***@#' \
        -e 's#([?&]password=)[^&]*#\1***#' <<<"$1"
}

ensure_postgres_client() {
    command -v psql >/dev/null && command -v pg_isready >/dev/null && return 0
    if is_root; then
        apt_install postgresql-client
    else
        die "psql and pg_isready are not installed" \
            "run: sudo apt-get install postgresql-client"
    fi
}

# wait_for_postgres URL: return once URL logs in, or exit with a message naming the URL
# (without its password). A server that is up but refuses the login fails at once: waiting
# would not change its mind.
wait_for_postgres() {
    local url=$1 shown deadline=$((SECONDS + SAM_PG_WAIT_SECS)) out
    shown=$(redact_url "$url")

    while :; do
        out=$(psql_url "$url" -c 'select 1' 2>&1) && return 0
        if pg_isready -q -d "$url"; then
            # Up, so the refusal is about the login or the database, unless the server
            # finished starting between the two calls: one more try tells which.
            sleep 0.5
            out=$(psql_url "$url" -c 'select 1' 2>&1) && return 0
            die "PostgreSQL at $shown accepts connections but refused this one:" \
                "$(awk '!seen[$0]++' <<<"${out//psql: error: /}")"
        fi
        ((SECONDS < deadline)) ||
            die "PostgreSQL at $shown did not accept connections within ${SAM_PG_WAIT_SECS}s:" \
                "$out" "(set SAM_PG_WAIT_SECS to wait longer)"
        sleep 0.5
    done
}

# psql_url URL ARGS...: psql without ~/.psqlrc, unaligned tuples only, stop on error.
psql_url() {
    local url=$1
    shift
    psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$url" "$@" </dev/null
}

# The newest installed server's bin directory (postgres, initdb, pg_ctl), or nothing.
pg_server_bindir() {
    local postgres
    postgres=$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1)
    if [[ -x $postgres ]]; then
        dirname "$postgres"
    elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}

# --- root: the machine's cluster -------------------------------------------------------

ensure_system_cluster() {
    if ! command -v pg_lsclusters >/dev/null || [[ -z $(pg_server_bindir) ]]; then
        apt_install postgresql
    fi
    ensure_postgres_client

    local cluster version name port status
    cluster=$(pick_system_cluster)
    if [[ -z $cluster ]]; then
        version=$(basename "$(dirname "$(pg_server_bindir)")")
        say "PostgreSQL: creating cluster $version/main"
        pg_createcluster "$version" main >/dev/null || die "pg_createcluster $version main failed"
        cluster=$(pick_system_cluster)
        [[ -n $cluster ]] || die "pg_lsclusters does not show the cluster $version/main just created"
    fi
    read -r version name port status <<<"$cluster"

    if [[ $status != online* ]]; then
        say "PostgreSQL: starting cluster $version/$name on port $port"
        pg_ctlcluster "$version" "$name" start ||
            die "pg_ctlcluster $version $name start failed" \
                "see /var/log/postgresql/postgresql-$version-$name.log"
    fi
    wait_for_system_cluster "$version/$name" "$port"

    ensure_sam_role_and_database "$port"
    DATABASE_URL="postgres://sam:sam@127.0.0.1:$port/sam"
    wait_for_postgres "$DATABASE_URL"
    say "PostgreSQL: cluster $version/$name, DATABASE_URL=$(redact_url "$DATABASE_URL")"
}

# The cluster to use, as "version name port status": a running one if any, else any one,
# the newest version first. Nothing when there is no cluster.
pick_system_cluster() {
    pg_lsclusters --no-header 2>/dev/null |
        awk '{ print ($4 ~ /^online/ ? 1 : 0), $1, $2, $3, $4 }' |
        sort -k1,1nr -k2,2Vr | head -n 1 | cut -d' ' -f2-
}

wait_for_system_cluster() {
    local cluster=$1 port=$2 deadline=$((SECONDS + SAM_PG_WAIT_SECS))
    until pg_isready -q -p "$port"; do
        ((SECONDS < deadline)) ||
            die "PostgreSQL cluster $cluster did not accept connections within ${SAM_PG_WAIT_SECS}s"
        sleep 0.5
    done
}

# psql as the postgres superuser over the local socket.
psql_superuser() {
    (cd / && runuser -u postgres -- psql -X -A -t -q -v ON_ERROR_STOP=1 "$@" </dev/null)
}

ensure_sam_role_and_database() {
    local port=$1 role
    role=$(psql_superuser -p "$port" \
        -c "select rolcanlogin and rolcreatedb from pg_roles where rolname = 'sam'") ||
        die "cannot query roles as the postgres user on port $port"

    case $role in
    "")
        say "PostgreSQL: creating role sam"
        psql_superuser -p "$port" -c "create role sam login createdb password 'sam'" ||
            die "creating role sam failed"
        ;;
    f)
        say "PostgreSQL: letting role sam log in and create databases"
        psql_superuser -p "$port" -c "alter role sam login createdb" ||
            die "altering role sam failed"
        ;;
    esac

    if [[ -z $(psql_superuser -p "$port" -c "select 1 from pg_database where datname = 'sam'") ]]; then
        say "PostgreSQL: creating database sam"
        psql_superuser -p "$port" -c "create database sam owner sam" ||
            die "creating database sam failed"
    fi
}

# --- not root: a private cluster ---------------------------------------------------------

ensure_user_cluster() {
    local base
    mkdir -p "${SAM_DATA_DIR:-.data}/postgres" ||
        die "cannot create ${SAM_DATA_DIR:-.data}/postgres"
    base=$(cd "${SAM_DATA_DIR:-.data}/postgres" && pwd)

    if [[ ! -f $base/data/PG_VERSION ]] && system_server_lets_sam_in; then
        return 0
    fi

    local bindir
    bindir=$(pg_server_bindir)
    [[ -n $bindir ]] ||
        die "the PostgreSQL server is not installed, and no server at 127.0.0.1 lets sam:sam in" \
            "run: sudo apt-get install postgresql" \
            "or set DATABASE_URL to a server you can use"

    [[ -f $base/data/PG_VERSION ]] || init_user_cluster "$bindir" "$base"
    start_user_cluster "$bindir" "$base"
}

# True, with DATABASE_URL set, when the machine's server already has the sam role and
# database (set up by an earlier run as root, say).
system_server_lets_sam_in() {
    command -v psql >/dev/null || return 1
    local port=5432 cluster
    cluster=$(pick_system_cluster)
    [[ -n $cluster ]] && port=$(cut -d' ' -f3 <<<"$cluster")

    local url="postgres://sam:sam@127.0.0.1:$port/sam"
    psql_url "$url" -c 'select 1' >/dev/null 2>&1 || return 1
    DATABASE_URL=$url
    say "PostgreSQL: the server on port $port lets sam in, DATABASE_URL=$(redact_url "$url")"
}

init_user_cluster() {
    local bindir=$1 base=$2
    say "PostgreSQL: creating a private cluster in $base/data"
    chmod 700 "$base"
    printf 'sam\n' >"$base/.pwfile"
    "$bindir/initdb" -D "$base/data" -U sam --pwfile="$base/.pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C \
        >"$base/initdb.log" 2>&1 || {
        rm -f "$base/.pwfile"
        die "initdb failed; see $base/initdb.log"
    }
    rm -f "$base/.pwfile"
}

start_user_cluster() {
    local bindir=$1 base=$2 data=$2/data sockets port
    sockets=$(user_socket_dir "$base")

    if "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        port=$(sed -n 4p "$data/postmaster.pid")
    else
        port=$(cat "$base/port" 2>/dev/null || true)
        if [[ -z $port ]] || port_in_use "$port"; then
            port=$(free_port)
        fi
        say "PostgreSQL: starting the private cluster on 127.0.0.1:$port"
        "$bindir/pg_ctl" -D "$data" -l "$base/postgres.log" -w -t "$SAM_PG_WAIT_SECS" \
            -o "-p $port -k $sockets -c listen_addresses=127.0.0.1" start >/dev/null ||
            die "the private PostgreSQL cluster did not start; see $base/postgres.log"
        printf '%s\n' "$port" >"$base/port"
    fi

    local admin="postgres://sam@/postgres?host=$sockets&port=$port"
    if [[ -z $(psql_url "$admin" -c "select 1 from pg_database where datname = 'sam'") ]]; then
        say "PostgreSQL: creating database sam"
        psql_url "$admin" -c 'create database sam' || die "creating database sam failed"
    fi

    DATABASE_URL="postgres://sam:sam@127.0.0.1:$port/sam"
    wait_for_postgres "$DATABASE_URL"
    say "PostgreSQL: private cluster in $data, DATABASE_URL=$(redact_url "$DATABASE_URL")"
    say "PostgreSQL: stop it with: $bindir/pg_ctl -D $data stop"
}

# The cluster's socket goes beside its data, unless that path is too long for a Unix
# socket (107 bytes on Linux), in which case it goes in a private directory under /tmp.
user_socket_dir() {
    local base=$1
    # 20 = length of "/.s.PGSQL.65535.lock", the longest file postgres puts there.
    if ((${#base} + 20 <= 107)); then
        printf '%s\n' "$base"
    else
        local dir
        dir="${TMPDIR:-/tmp}/sam-postgres-$(id -u)"
        mkdir -p "$dir" && chmod 700 "$dir"
        printf '%s\n' "$dir"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    local port _
    for _ in {1..50}; do
        port=$((20000 + RANDOM % 30000))
        port_in_use "$port" || {
            printf '%s\n' "$port"
            return 0
        }
    done
    die "found no free TCP port on 127.0.0.1 for PostgreSQL"
}
