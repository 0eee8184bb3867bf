# shellcheck shell=bash
# Installing Debian packages: only as root, only what is missing, and `apt-get update` at
# most once per run of a script.

SAM_APT_UPDATED=${SAM_APT_UPDATED:-}

# apt_install PACKAGE...: install the packages noninteractively. The caller checks first
# that something is missing, so a machine that has everything never touches apt.
apt_install() {
    is_root || die "installing $* needs root" "run: sudo apt-get install $*"
    command -v apt-get >/dev/null ||
        die "apt-get not found: install $* with your system's package manager"

    if [[ -z $SAM_APT_UPDATED ]]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
            die "apt-get update failed"
        SAM_APT_UPDATED=1
    fi

    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >/dev/null || die "apt-get install $* failed"
}
