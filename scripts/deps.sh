# deps.sh - sourced by demo.sh and test.sh: makes sure the Debian packages
# a command needs are installed. As root it installs what is missing; as
# anyone else it prints the exact install line and stops.
#
# usage: shmkit_need_packages pkg...
shmkit_need_packages() {
    missing=""
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        case "$status" in
            *" installed") ;;
            *) missing="$missing $pkg" ;;
        esac
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        echo "shmkit: installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing
    else
        echo "shmkit: missing Debian packages. Install them with:" >&2
        echo "  sudo apt-get install -y$missing" >&2
        exit 1
    fi
}

# Packages every build needs.
SHMKIT_BUILD_PACKAGES="build-essential cmake pkg-config libssl-dev"
