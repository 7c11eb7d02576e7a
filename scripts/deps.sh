# deps.sh - sourced by demo.sh and test.sh: makes sure the Debian packages
# a command needs are installed. As root it installs what is missing; as
# anyone else it prints the exact install line and stops.
#
# Another apt-get or dpkg may be running (an unattended upgrade, a parallel
# build): we wait for it up to SHMKIT_APT_LOCK_WAIT seconds (default 600)
# instead of failing at once. `apt-get install` waits for the dpkg lock
# itself (DPkg::Lock::Timeout); `apt-get update` (apt 2.6) does not wait
# for the lock of the package lists, so shmkit_apt_update retries it while
# that lock is what stops it.
#
# usage: shmkit_need_packages pkg...

# apt-get update, retried every 2 s while another apt holds the lists lock,
# for at most SHMKIT_APT_LOCK_WAIT seconds. Any other failure stops at once.
shmkit_apt_update() {
    deadline=$(( $(date +%s) + ${SHMKIT_APT_LOCK_WAIT:-600} ))
    err=$(mktemp)
    while :; do
        if apt-get -o DPkg::Lock::Timeout="${SHMKIT_APT_LOCK_WAIT:-600}" \
               update -qq 2>"$err"; then
            rm -f "$err"
            return 0
        fi
        if ! grep -q 'Could not get lock' "$err" ||
           [ "$(date +%s)" -ge "$deadline" ]; then
            cat "$err" >&2
            rm -f "$err"
            return 1
        fi
        echo "shmkit: another apt-get holds the package lists; waiting" >&2
        sleep 2
    done
}

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
        shmkit_apt_update
        # shellcheck disable=SC2086
        apt-get -o DPkg::Lock::Timeout="${SHMKIT_APT_LOCK_WAIT:-600}" \
            install -y -qq --no-install-recommends $missing
    else
        echo "shmkit: missing Debian packages. Install them with:" >&2
        echo "  sudo apt-get install -y$missing" >&2
        exit 1
    fi
}

# Packages every build needs.
SHMKIT_BUILD_PACKAGES="build-essential cmake pkg-config libssl-dev"
