#!/bin/bash
# runctl-bot job runner: written into the job directory by the launch script and started detached as
#   setsid nohup bash <job dir>/runner.sh <job dir>
# It prepares the job (code, data, checkpoints to resume from, venv, requirements), runs the entry script in
# its own process group, and records what happened as one small file per fact in the job directory:
#   pid, boot_id, started_at, phase (setup|training|syncing|done), train_pid, error, sync_error,
#   finished_at, and exit_code, written last, so its presence means the job is over.
# Its configuration comes from NUL-separated files (spec, args, env) written by the launch script: it is
# read as data and never evaluated.
set -uo pipefail

job_dir=$1
cd -- "$job_dir" || exit 70
exec </dev/null >>"$job_dir/train.log" 2>&1

now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
say() { printf '[runctl %s] %s\n' "$(now)" "$*"; }

# record NAME VALUE: written to a temporary file and renamed, so a reader never sees half of it.
record() {
    printf '%s\n' "$2" >"$job_dir/.$1.tmp" && mv -f -- "$job_dir/.$1.tmp" "$job_dir/$1"
}

# `pid` comes last: the launch script waits for it, and once it is there the runner is fully identifiable
# (see runctl_alive), so a second launch of the same job id is refused as already running.
record boot_id "$(head -c 64 /proc/sys/kernel/random/boot_id | tr -d '\n')"
record started_at "$(now)"
record phase setup
record pid "$$"

declare -A spec=()
while IFS= read -r -d '' item; do
    spec[${item%%=*}]=${item#*=}
done <"$job_dir/spec"
args=()
while IFS= read -r -d '' item; do
    args+=("$item")
done <"$job_dir/args"
job_env=()
while IFS= read -r -d '' item; do
    job_env+=("$item")
done <"$job_dir/env"

code_dir=$job_dir/code
data_dir=$job_dir/data
output_dir=$job_dir/output
checkpoint_dir=$job_dir/checkpoints
venv=$job_dir/venv
mkdir -p -- "$code_dir" "$data_dir" "$output_dir" "$checkpoint_dir"

phase=setup
final_rc=''

on_exit() {
    local rc=$?
    [[ -n $final_rc ]] || final_rc=$rc
    record finished_at "$(now)"
    record phase done
    record exit_code "$final_rc"
    say "job finished with exit code $final_rc"
}
trap on_exit EXIT

# A TERM during setup (a cancel) ends the job; during training the training process has its own process
# group and gets its own signal, and the runner stays to upload what the training left behind.
on_term() {
    if [[ $phase == setup ]]; then
        say "stopped by a signal during setup"
        record error "stopped during setup"
        final_rc=143
        exit 143
    fi
    say "signal received; waiting for the training process to end before uploading"
}
trap on_term TERM INT

# fail MESSAGE CODE: a setup step went wrong; the job ends with that step's exit code (never 0).
fail() {
    say "error: $1"
    record error "$1"
    final_rc=${2:-1}
    [[ $final_rc != 0 ]] || final_rc=1
    exit "$final_rc"
}

# fetch URI FORM DIR: a prefix is synced into DIR, an object copied into it under its own name.
fetch() {
    if [[ $2 == prefix ]]; then
        aws s3 sync --only-show-errors "$1" "$3"
    else
        aws s3 cp --only-show-errors "$1" "$3/"
    fi
}

number() {
    [[ ${spec[$1]:-} =~ ^[0-9]+$ ]] && printf '%s' "${spec[$1]}" || printf '0'
}

code_uri=${spec[code_uri]:-}
say "job ${spec[job_id]:-} on $(hostname 2>/dev/null || echo this machine)"
case ${spec[code_form]:-} in
    archive)
        say "downloading the code archive $code_uri"
        aws s3 cp --only-show-errors "$code_uri" "$job_dir/code.tar.gz" ||
            fail "downloading the code from $code_uri failed" $?
        tar -xzf "$job_dir/code.tar.gz" -C "$code_dir" --no-same-owner ||
            fail "unpacking the code archive failed" $?
        rm -f -- "$job_dir/code.tar.gz"
        ;;
    prefix)
        say "downloading the code from $code_uri"
        aws s3 sync --only-show-errors "$code_uri" "$code_dir" ||
            fail "downloading the code from $code_uri failed" $?
        ;;
    *) fail "unknown code form ${spec[code_form]:-}" 2 ;;
esac

if [[ -n ${spec[data_uri]:-} ]]; then
    say "downloading the data ${spec[data_uri]}"
    fetch "${spec[data_uri]}" "${spec[data_form]:-}" "$data_dir" ||
        fail "downloading the data from ${spec[data_uri]} failed" $?
fi

if [[ -n ${spec[resume_from]:-} ]]; then
    say "downloading the checkpoint to resume from ${spec[resume_from]}"
    fetch "${spec[resume_from]}" "${spec[resume_form]:-}" "$checkpoint_dir" ||
        fail "downloading the checkpoint from ${spec[resume_from]} failed" $?
fi

entry=${spec[entry]:-}
[[ -n $entry && -f $code_dir/$entry ]] || fail "the entry script $entry is not in the code" 2

# --system-site-packages: the AMI's own packages (CUDA builds of torch on a deep-learning AMI) stay usable
# without downloading them again; --without-pip: no pip bootstrap unless there is something to install.
say "creating the virtual environment with ${spec[python]:-python3}"
"${spec[python]:-python3}" -m venv --system-site-packages --without-pip "$venv" ||
    fail "creating the virtual environment with ${spec[python]:-python3} failed" $?

requirements=${spec[requirements]:-}
if [[ -z $requirements ]]; then
    [[ -f $code_dir/requirements.txt ]] && requirements=requirements.txt
elif [[ ! -f $code_dir/$requirements ]]; then
    fail "the requirements file $requirements is not in the code" 2
fi
if [[ -n $requirements ]]; then
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        say "bootstrapping pip in the virtual environment"
        "$venv/bin/python" -m ensurepip --default-pip ||
            fail "pip is not available to install $requirements (install python3-pip on the image)" $?
    fi
    say "installing $requirements"
    (cd -- "$code_dir" && "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
        -r "$code_dir/$requirements") || fail "installing $requirements failed" $?
else
    say "no requirements file; nothing to install"
fi

[[ ! -e $job_dir/cancelled ]] || fail "cancelled before the training started" 143

run_args=("${args[@]}")
if [[ -n ${spec[resume_from]:-} ]]; then
    run_args+=(--resume-from "${spec[resume_from]}")
fi

say "starting $entry"
# From here a TERM no longer ends the runner (see on_term); set before the fork so there is no gap.
phase=training
(
    cd -- "$code_dir" || exit 70
    # Only the RUNCTL_ variables set below reach the training (not, say, RUNCTL_JOBS_DIR).
    for name in "${!RUNCTL_@}"; do
        unset -v "$name"
    done
    for item in "${job_env[@]}"; do
        [[ ${item%%=*} =~ ^[A-Z_][A-Z0-9_]*$ ]] || {
            say "refusing environment variable name ${item%%=*}"
            exit 2
        }
        export -- "$item"
    done
    export RUNCTL_JOB_ID="${spec[job_id]:-}" RUNCTL_OUTPUT="$output_dir" RUNCTL_CHECKPOINT="$checkpoint_dir"
    export RUNCTL_DATA="$data_dir" VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" PYTHONUNBUFFERED=1
    if [[ -n ${spec[resume_from]:-} ]]; then
        export RUNCTL_RESUME_FROM="${spec[resume_from]}"
    fi
    unset PYTHONHOME
    # This subshell is not a process-group leader, so setsid does not fork: the pid stays the same and
    # becomes the training's session and process-group id, which cancel signals as a whole.
    exec setsid "$venv/bin/python" "$code_dir/$entry" "${run_args[@]}"
) &
train_pid=$!
record train_pid "$train_pid"
record phase training

checkpoint_uri=${spec[checkpoint_uri]:-}
sync_every=$(number checkpoint_sync_seconds)
sync_loop=''
if [[ -n $checkpoint_uri ]] && ((sync_every > 0)); then
    # Upload checkpoints while the training runs, so a machine that dies (a spot interruption) still leaves
    # the last ones in S3. Failures here are retried on the next round; the final upload is the one judged.
    (
        stop=0
        sleeper=''
        trap 'stop=1; [[ -z $sleeper ]] || kill "$sleeper" 2>/dev/null' TERM
        while ((!stop)); do
            sleep "$sync_every" &
            sleeper=$!
            wait "$sleeper"
            sleeper=''
            ((!stop)) || break
            aws s3 sync --only-show-errors "$checkpoint_dir" "$checkpoint_uri" ||
                say "uploading checkpoints failed; trying again in ${sync_every}s"
        done
    ) &
    sync_loop=$!
fi

while :; do
    wait "$train_pid"
    train_rc=$?
    # A trapped signal also ends `wait` with a status above 128; the training may still be running.
    if ((train_rc > 128)) && kill -0 "$train_pid" 2>/dev/null; then
        continue
    fi
    break
done
say "training exited with code $train_rc"

phase=syncing
record phase syncing
if [[ -n $sync_loop ]]; then
    kill -TERM "$sync_loop" 2>/dev/null
    wait "$sync_loop"
fi

problems=()
if [[ -n ${spec[output_uri]:-} ]]; then
    say "uploading the output to ${spec[output_uri]}"
    aws s3 sync --only-show-errors "$output_dir" "${spec[output_uri]}" ||
        problems+=("uploading the output to ${spec[output_uri]} failed (aws exit code $?)")
else
    say "no --output given; the output stays in $output_dir"
fi
if [[ -n $checkpoint_uri ]]; then
    say "uploading the checkpoints to $checkpoint_uri"
    aws s3 sync --only-show-errors "$checkpoint_dir" "$checkpoint_uri" ||
        problems+=("uploading the checkpoints to $checkpoint_uri failed (aws exit code $?)")
fi
if ((${#problems[@]} > 0)); then
    record sync_error "$(printf '%s; ' "${problems[@]}")"
    say "upload problems: ${problems[*]}"
fi

# The data is a copy of what is in S3; keeping it would fill the disk one job at a time.
rm -rf -- "$data_dir"

final_rc=$train_rc
exit "$final_rc"
