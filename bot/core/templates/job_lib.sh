# runctl-bot: helpers shared by the launch, status, cancel and logs scripts (pasted into each one by
# bot/core/training.py, so every script stays a single self-contained SSM command).

# The jobs directory, absolute, or an empty string (and a message on stderr) when it is unusable.
runctl_jobs_root() {
    local root=${RUNCTL_JOBS_DIR:-/var/lib/runctl/jobs}
    case $root in
        /*) printf '%s' "${root%/}" ;;
        *) printf 'runctl: RUNCTL_JOBS_DIR must be an absolute path\n' >&2 ;;
    esac
}

# runctl_field DIR NAME PATTERN: the first line of DIR/NAME when it matches PATTERN, else nothing. Files in
# a job directory are facts to check, not text to trust: a torn or edited file reads as absent.
runctl_field() {
    local value
    [[ -f $1/$2 ]] || return 0
    value=$(head -c 256 -- "$1/$2" 2>/dev/null) || return 0
    value=${value%%$'\n'*}
    if [[ $value =~ $3 ]]; then
        printf '%s' "$value"
    fi
}

runctl_boot_id() {
    head -c 64 /proc/sys/kernel/random/boot_id 2>/dev/null | tr -d '\n'
}

# runctl_alive DIR: whether the job's runner still runs. A pid alone is not proof: after a reboot, or once
# the runner is gone, the number can belong to anything, so the boot and the command line must match too.
runctl_alive() {
    local pid boot
    pid=$(runctl_field "$1" pid '^[0-9]+$')
    boot=$(runctl_field "$1" boot_id '^[0-9a-f-]+$')
    [[ -n $pid && -n $boot && $boot == "$(runctl_boot_id)" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$1/runner.sh"
}

# runctl_group_alive PGID: whether any process of that process group is left.
runctl_group_alive() {
    [[ $1 =~ ^[0-9]+$ ]] && kill -0 -- "-$1" 2>/dev/null
}
