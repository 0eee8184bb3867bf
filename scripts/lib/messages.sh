# shellcheck shell=bash
# Messages shared by the set-up scripts: every line they print starts with "==>" (a step),
# "warning:" or "error:", so a CI log shows at a glance where set-up stopped.

# Announce a step on stderr, so stdout stays free for the program being run.
say() {
    printf '==> %s\n' "$*" >&2
}

warn() {
    printf 'warning: %s\n' "$*" >&2
}

# Print an error and exit 1. Several arguments become several lines.
die() {
    printf 'error: %s\n' "$1" >&2
    shift
    local more
    for more in "$@"; do
        # An argument may hold several lines (a program's error output): indent each.
        printf '%s\n' "$more" | sed 's/^/       /' >&2
    done
    exit 1
}

is_root() {
    [[ $(id -u) -eq 0 ]]
}
