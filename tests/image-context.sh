#!/usr/bin/env bash
# The image's build context compiles: `make image-context`, no Docker engine needed.
#
# Reads deploy/Dockerfile's build stage (the one whose RUN runs `cargo build`), copies into an empty
# directory exactly what its COPY lines copy from the build context (as docker does: a directory's
# contents into the destination, files into a destination ending in `/`, relative destinations
# below WORKDIR, minus what deploy/Dockerfile.dockerignore excludes), then runs
# `cargo check --locked --offline --bin NAME` there with GIT_COMMIT set, as the image build sets it.
# A file the build needs that the Dockerfile does not copy (build.rs, a workspace member, a module)
# fails it. It also checks that the build stage declares ARG GIT_COMMIT before that RUN and that
# build.rs recorded the commit given (JXW_COMMIT, reported by xnat_webhook_build_info).
#
# CARGO_TARGET_DIR defaults to the repository's target/: the dependencies `make lint` already
# checked are reused, and only the workspace's own crates compile.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
dockerfile=deploy/Dockerfile
commit=0123456789ab
cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$repo/$target_dir

fail() {
  echo "image-context: $*" >&2
  exit 1
}

# BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile, else .dockerignore at the root.
ignore_file=$dockerfile.dockerignore
[[ -f $ignore_file ]] || ignore_file=.dockerignore
patterns=()
negations=0
if [[ -f $ignore_file ]]; then
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    [[ -z $line || $line == '#'* ]] && continue
    neg=
    if [[ $line == '!'* ]]; then
      neg='!'
      line=${line#!}
      negations=1
    fi
    while [[ $line == /* || $line == ./* ]]; do line=${line#/}; line=${line#./}; done
    while [[ $line == */ ]]; do line=${line%/}; done
    [[ -n $line ]] && patterns+=("$neg$line")
  done <"$ignore_file"
fi

# Is this context-relative path excluded? The last pattern that matches it or one of its parent
# directories wins, as in docker. Matching is bash's, where `*` also crosses `/` (docker's does
# not): it can only exclude more than docker does, never let in what docker leaves out.
ignored() {
  local path=$1 verdict=1 pattern neg
  for pattern in "${patterns[@]}"; do
    neg=0
    if [[ $pattern == '!'* ]]; then
      neg=1
      pattern=${pattern#!}
    fi
    # shellcheck disable=SC2053 # the pattern is a glob on purpose
    if [[ $path == $pattern || $path == $pattern/* ]]; then
      verdict=$neg
    fi
  done
  return "$verdict"
}

# The build stage: instructions (comments dropped, continuation lines joined) from the FROM that
# starts it to the next FROM.
mapfile -t instructions < <(
  sed -e '/^[[:space:]]*#/d' "$dockerfile" |
    awk '{ if (sub(/\\[[:space:]]*$/, "")) { acc = acc $0 " "; next } print acc $0; acc = "" }'
)
stage_start=-1
candidate=-1
stage_end=${#instructions[@]}
for i in "${!instructions[@]}"; do
  ins=${instructions[$i]}
  if [[ ${ins^^} =~ ^[[:space:]]*FROM[[:space:]] ]]; then
    if ((stage_start >= 0)); then
      stage_end=$i
      break
    fi
    candidate=$i
  elif [[ ${ins^^} =~ ^[[:space:]]*RUN[[:space:]] && $ins == *"cargo build"* ]]; then
    stage_start=$candidate
  fi
done
((stage_start >= 0)) || fail "$dockerfile has no stage whose RUN runs cargo build"
stage=("${instructions[@]:stage_start:stage_end-stage_start}")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/image-context.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root # the image's filesystem: /src is $root/src

# Copy one context-relative path (a file, a symbolic link or a directory) to an absolute path in
# the image, leaving out what the ignore file excludes.
copy_into() {
  local source=$1 to=$2 from file rel pattern prune=()
  if [[ -d $source && ! -L $source ]]; then
    from=$repo
    [[ $source == . ]] || from=$repo/$source
    if ((!negations)); then
      for pattern in "${patterns[@]}"; do prune+=(-o -path "$repo/$pattern"); done
    fi
    mkdir -p "$root$to"
    while IFS= read -r -d '' file; do
      rel=${file#"$repo"/}
      ignored "$rel" && continue
      mkdir -p "$(dirname "$root$to/${file#"$from"/}")"
      cp -P --preserve=mode "$file" "$root$to/${file#"$from"/}"
    done < <(find "$from" -mindepth 1 \( -false "${prune[@]}" \) -prune -o ! -type d -print0)
  else
    mkdir -p "$(dirname "$root$to")"
    cp -P --preserve=mode "$repo/$source" "$root$to"
  fi
}

workdir=/
copied=()
has_arg_commit=0
bin=
for ins in "${stage[@]}"; do
  read -r -a words <<<"$ins"
  ((${#words[@]})) || continue
  keyword=${words[0]^^}
  case $keyword in
    WORKDIR)
      dir=${words[1]}
      [[ $dir == /* ]] || dir=$workdir/$dir
      workdir=$dir
      ;;
    ARG)
      [[ ${words[1]} == GIT_COMMIT || ${words[1]} == GIT_COMMIT=* ]] && has_arg_commit=1
      ;;
    ADD)
      fail "the build stage uses ADD (not modelled here; use COPY): $ins"
      ;;
    COPY)
      args=("${words[@]:1}")
      while [[ ${args[0]:-} == --* ]]; do
        case ${args[0]} in
          --from=*) fail "COPY --from is not from the build context (not modelled here): $ins" ;;
          --parents*) fail "COPY --parents is not modelled here: $ins" ;;
        esac
        args=("${args[@]:1}")
      done
      [[ ${args[0]:-} == '['* ]] && fail "COPY in JSON form is not modelled here: $ins"
      ((${#args[@]} >= 2)) || fail "COPY needs a source and a destination: $ins"
      dest=${args[-1]}
      sources=("${args[@]:0:${#args[@]}-1}")
      [[ $dest == /* ]] || dest=$workdir/$dest
      # A destination ending in / (or . / ..) is a directory; so is one that is already there.
      into_dir=0
      [[ $dest == */ || $dest == */. || $dest == */.. || -d $root$dest ]] && into_dir=1
      dest=$(realpath -m "/$dest")
      expanded=()
      for source in "${sources[@]}"; do
        source=$(realpath -m --relative-to=/ "/$source") # as docker: within the context
        if [[ $source == *[*?[]* ]]; then
          mapfile -t matches < <(compgen -G "$source" || true)
          ((${#matches[@]})) || fail "COPY $source: no file in the build context matches"
          expanded+=("${matches[@]}")
          into_dir=1
        else
          expanded+=("$source")
        fi
      done
      ((${#expanded[@]} == 1)) || into_dir=1
      for source in "${expanded[@]}"; do
        if [[ ! -e $source && ! -L $source ]] || ignored "$source"; then
          fail "COPY $source: not in the build context (missing, or excluded by $ignore_file)"
        fi
        if [[ -d $source && ! -L $source ]]; then
          copy_into "$source" "$dest"
        elif ((into_dir)); then
          copy_into "$source" "$dest/$(basename "$source")"
        else
          copy_into "$source" "$dest"
        fi
        copied+=("$source")
      done
      ;;
    RUN)
      if [[ $ins == *"cargo build"* ]]; then
        ((has_arg_commit)) ||
          fail "the build stage declares no ARG GIT_COMMIT before its cargo build: the image's binary would report commit \"unknown\""
        [[ $ins =~ --bin[[:space:]=]+([A-Za-z0-9_-]+) ]] && bin=${BASH_REMATCH[1]}
        build_dir=$workdir
      fi
      ;;
  esac
done
bin=${bin:-jupyter-xnat-webhook}
build_dir=$(realpath -m "/$build_dir")

echo "image-context: $dockerfile's build stage copies ${copied[*]} into $build_dir; cargo check --bin $bin there"
start=$SECONDS
json=$tmp/messages.json
if ! (cd "$root$build_dir" &&
  GIT_COMMIT=$commit CARGO_TARGET_DIR=$target_dir \
    "$cargo" check --locked --offline --bin "$bin" --message-format=json-render-diagnostics >"$json"); then
  fail "the image's build context does not compile: $dockerfile's build stage must COPY every file the build reads (it copies: ${copied[*]})"
fi
# build.rs ran in the context and recorded the commit the build was given.
grep -q "\"JXW_COMMIT\",\"$commit\"" "$json" ||
  fail "build.rs did not record GIT_COMMIT=$commit as JXW_COMMIT in the image's build context"
echo "image-context: ok in $((SECONDS - start)) s (the build context compiles; the commit is recorded)"
