# shellcheck shell=bash
# The browser for the end-to-end tests: Debian's Chromium and its ChromeDriver.
# Needs messages.sh and apt.sh sourced first.

# ensure_browser: make sure chromium and chromedriver are installed, installing them with
# apt as root, and export their paths for the tests as CHROMIUM and CHROMEDRIVER.
ensure_browser() {
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)

    if ((${#missing[@]} > 0)); then
        if is_root; then
            apt_install "${missing[@]}"
        else
            die "the browser tests need these packages, not installed: ${missing[*]}" \
                "run: sudo apt-get install chromium chromium-driver"
        fi
    fi

    CHROMIUM=$(command -v chromium)
    CHROMEDRIVER=$(command -v chromedriver)
    export CHROMIUM CHROMEDRIVER
    say "browser: $("$CHROMEDRIVER" --version 2>/dev/null | head -n1)"
}
