#!/usr/bin/env bash
# npm run image:test: build the container image from ./Dockerfile with buildah and run it.
#
# No registry is needed: the two base images are assembled from this machine's own Node.js
# (`command -v node`) and its shared libraries:
#   localhost/meshca-build-base:node20  node:20's layout (/usr/local/bin/node, npm, sh, coreutils)
#   localhost/meshca-base:node20        distroless's layout: /nodejs/bin/node, no shell, no npm
# npm ci runs offline from a copy of this machine's npm cache (npm config get cache).
#
# The image then runs under buildah (vfs storage, chroot isolation, host network) as the user
# it declares (65532:65532) on its own root filesystem bind-mounted read-only, with a host
# directory as the only writable path (/var/lib/meshca): `--version`, `ca init`, and `ca serve`
# until https://127.0.0.1:<port>/readyz answers 200, then SIGTERM. Needs root.
#
# Environment: IMAGE_TEST_IMAGE (default localhost/meshca:test), IMAGE_TEST_KEEP=1 keeps the
# work directory (logs, data dir).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'image-test: %s\n' "$*"; }
fail() {
  printf 'image-test: FAIL: %s\n' "$*" >&2
  exit 1
}

if ! command -v buildah >/dev/null 2>&1; then
  echo "image-test: buildah is not installed; install it with: sudo apt-get install -y buildah"
  exit 1
fi
[[ $(id -u) == 0 ]] || fail "needs root (buildah vfs storage, chroot isolation and a read-only bind mount)"
for tool in node npm curl timeout ldd mount ps diff; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found"
done

IMAGE=${IMAGE_TEST_IMAGE:-localhost/meshca:test}
BUILD_BASE=localhost/meshca-build-base:node20
RUN_BASE=localhost/meshca-base:node20
RUN_NODE_BIN=/nodejs/bin/node # where the runtime base has node: distroless's path
VERSION=$(node -p 'require("./package.json").version')
bah() { buildah --storage-driver vfs "$@"; }

NODE=$(readlink -f "$(command -v node)")
[[ $("$NODE" -p 'process.versions.node.split(".")[0]') == 20 ]] || fail "$NODE is not Node.js 20"
NPM_DIR=$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)
[[ -f $NPM_DIR/bin/npm-cli.js ]] || fail "npm installation not found (looked in $NPM_DIR)"
NPM_CACHE=$(npm config get cache)
[[ -d $NPM_CACHE/_cacache ]] || fail "no npm cache at $NPM_CACHE (run npm ci once with network)"

WORK=$(mktemp -d /var/tmp/meshca-image-test.XXXXXX)
CONTAINERS=()
MOUNTS=() # our bind mounts over the container's rootfs, innermost last
SERVE_PID=""
# The processes under PID (buildah run's chroot child and the command it runs).
descendants() {
  local p
  for p in $(ps -o pid= --ppid "$1" || true); do
    echo "$p"
    descendants "$p"
  done
}
# SIGNAL the meshca process under `buildah run` (PID): buildah does not forward signals.
signal_meshca() {
  local p comm
  for p in $(descendants "$2"); do
    comm=$(cat "/proc/$p/comm" 2>/dev/null || true)
    if [[ $(readlink "/proc/$p/exe" 2>/dev/null || true) == *"$RUN_NODE_BIN" || $comm == meshca || $comm == node ]]; then
      kill "-$1" "$p"
      return 0
    fi
  done
  return 1
}
cleanup() {
  local rc=$?
  set +e
  if [[ -n $SERVE_PID ]] && kill -0 "$SERVE_PID" 2>/dev/null; then
    signal_meshca KILL "$SERVE_PID"
    kill -TERM "$SERVE_PID" 2>/dev/null
    timeout 10 tail --pid="$SERVE_PID" -f /dev/null
  fi
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}" 2>/dev/null; done
  for c in "${CONTAINERS[@]}"; do [[ -n $c ]] && bah rm "$c" >/dev/null 2>&1; done
  if [[ ${IMAGE_TEST_KEEP:-} == 1 || $rc != 0 ]]; then
    echo "image-test: work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

image_id() { bah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true; }
# Drop the image a tag pointed at before it was rebuilt (vfs keeps every layer as a full copy).
drop_old() {
  local old=$1 name=$2
  if [[ -n $old && $old != "$(image_id "$name")" ]]; then bah rmi "$old" >/dev/null 2>&1 || true; fi
}

# copy_in ROOTFS FILE [DEST]: FILE (dereferenced) at DEST (default: the same path), with the
# shared libraries ldd lists for it, each at the path the dynamic loader looks for it.
copy_in() {
  local rootfs=$1 file=$2 dest=${3:-$2} lib
  mkdir -p "$rootfs$(dirname "$dest")"
  cp -L "$file" "$rootfs$dest"
  while read -r lib; do
    [[ -e $rootfs$lib ]] && continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done < <(ldd "$file" 2>/dev/null | grep -o '/[^ ]*' || true)
}

base_files() {
  local rootfs=$1
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/root" "$rootfs/home/nonroot" "$rootfs/var/lib"
  chmod 1777 "$rootfs/tmp"
  chmod 0700 "$rootfs/root"
  chown 65532:65532 "$rootfs/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"; fi
}

make_base() {
  local name=$1 kind=$2 old ctr rootfs tool
  old=$(image_id "$name")
  ctr=$(bah from --pull=never scratch)
  CONTAINERS+=("$ctr")
  rootfs=$(bah mount "$ctr")
  base_files "$rootfs"
  if [[ $kind == build ]]; then
    # node:20's layout: node and npm under /usr/local, a POSIX shell and the coreutils the
    # Dockerfile's RUN lines and npm scripts use (/usr/bin/env for #!/usr/bin/env node).
    sed -i 's|:/root:/sbin/nologin|:/root:/bin/sh|' "$rootfs/etc/passwd"
    copy_in "$rootfs" "$NODE" /usr/local/bin/node
    mkdir -p "$rootfs/usr/local/lib/node_modules"
    cp -a "$NPM_DIR" "$rootfs/usr/local/lib/node_modules/npm"
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
    copy_in "$rootfs" "$(readlink -f /bin/sh)" /bin/sh
    for tool in env find mkdir chmod rm cp mv ln ls cat; do
      copy_in "$rootfs" "$(readlink -f "$(command -v "$tool")")" "/usr/bin/$tool"
    done
    bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --cmd '["node"]' "$ctr"
  else
    # distroless/nodejs20's layout: node at /nodejs/bin/node and nothing that could run a script.
    copy_in "$rootfs" "$NODE" "$RUN_NODE_BIN"
    bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
      --entrypoint "[\"$RUN_NODE_BIN\"]" --user 0 --workingdir / "$ctr"
  fi
  bah umount "$ctr" >/dev/null
  bah commit --quiet --rm "$ctr" "$name" >/dev/null
  CONTAINERS=("${CONTAINERS[@]/$ctr/}")
  drop_old "$old" "$name"
}

log "assembling base images from $NODE (node $("$NODE" --version)) and npm $(npm --version)…"
make_base "$BUILD_BASE" build
make_base "$RUN_BASE" run

# The build writes the npm cache (index, logs): give it a copy.
mkdir -p "$WORK/npm-cache"
cp -a "$NPM_CACHE/_cacache" "$WORK/npm-cache/"

log "building $IMAGE (buildah build, vfs, chroot isolation, npm offline)…"
old_image=$(image_id "$IMAGE")
build_start=$(date +%s)
if ! timeout 1800 buildah --storage-driver vfs build --isolation chroot --pull=never --layers=false \
  --volume "$WORK/npm-cache:/root/.npm" \
  --build-arg BUILD_IMAGE="$BUILD_BASE" \
  --build-arg BASE_IMAGE="$RUN_BASE" \
  --build-arg NODE_BIN="$RUN_NODE_BIN" \
  --build-arg NPM_CONFIG_OFFLINE=true \
  --build-arg VERSION="$VERSION" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || true)" \
  --tag "$IMAGE" --file Dockerfile . >"$WORK/build.log" 2>&1; then
  tail -n 40 "$WORK/build.log" >&2
  fail "build failed (log: $WORK/build.log)"
fi
build_seconds=$(($(date +%s) - build_start))
drop_old "$old_image" "$IMAGE"
SIZE=$(bah images --format '{{.Size}}' "$IMAGE" | head -n 1)
log "built $IMAGE in ${build_seconds}s: $SIZE"

# --- the image's configuration ----------------------------------------------------------------
bah inspect --type image "$IMAGE" >"$WORK/image.json"
config() { node -e 'const v = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).OCIv1.config[process.argv[2]];
  for (const line of Array.isArray(v) ? v : [typeof v === "string" ? v : JSON.stringify(v ?? null)]) console.log(line);' "$WORK/image.json" "$1"; }
mapfile -t ENTRYPOINT < <(config Entrypoint)
[[ ${#ENTRYPOINT[@]} -gt 0 && ${ENTRYPOINT[0]} == /* ]] || fail "the image has no ENTRYPOINT with an absolute path"
user=$(config User)
[[ $user == 65532:65532 ]] || fail "image user is $user, expected 65532:65532"
labels=$(config Labels)
for label in title description licenses source version; do
  [[ $labels == *"\"org.opencontainers.image.$label\""* ]] || fail "label org.opencontainers.image.$label missing"
done
[[ $labels == *'"org.opencontainers.image.version":"'"$VERSION"'"'* ]] || fail "label version is not $VERSION: $labels"
[[ $labels == *'"org.opencontainers.image.licenses":"Apache-2.0"'* ]] || fail "license label is not Apache-2.0"
[[ $(config ExposedPorts) == '{"15012/tcp":{},"15014/tcp":{}}' ]] || fail "exposed ports are $(config ExposedPorts)"
log "entrypoint ${ENTRYPOINT[*]}, user $user, labels ok"

# --- run it: read-only root filesystem, one writable data dir ----------------------------------
CTR=$(bah from --pull=never "$IMAGE")
CONTAINERS+=("$CTR")
ROOTFS=$(bah mount "$CTR")
[[ -d $ROOTFS/app ]] || fail "cannot mount the container ($ROOTFS)"
[[ -x $ROOTFS/usr/local/bin/meshca && ! -e $ROOTFS/bin/sh && ! -e $ROOTFS/usr/local/bin/npm ]] ||
  fail "runtime image has a shell or npm, or no /usr/local/bin/meshca"
[[ $(stat -c %u:%g "$ROOTFS/var/lib/meshca") == 65532:65532 ]] || fail "/var/lib/meshca is not owned by 65532"
[[ $(stat -c %u:%g "$ROOTFS/var/lib" "$ROOTFS/app" "$ROOTFS/app/dist" | sort -u) == 0:0 ]] || fail "/var/lib or /app is not root-owned"
[[ -z $(find "$ROOTFS/app" \( -user 65532 -o -group 65532 -o \( -perm -0002 ! -type l \) \) -print -quit) ]] || fail "/app has files the runtime user can write"
# Read-only root: the container's rootfs directory (vfs) is bind-mounted onto itself and
# remounted ro; buildah run's chroot isolation then uses that. What buildah run itself puts
# there (mount points, /etc/hosts, ...) goes in by a first run before that. buildah 1.28 writes
# /run/.containerenv on every run and panics when it cannot remove it: /run gets an empty
# root-owned 0755 host directory (not writable by 65532), checked empty afterwards.
run() { timeout "$1" buildah --storage-driver vfs run --isolation chroot --volume "$WORK/data:/var/lib/meshca" "$CTR" -- "${@:2}"; }
mkdir -p "$WORK/data"
chown 65532:65532 "$WORK/data"
chmod 0700 "$WORK/data"
run 60 "${ENTRYPOINT[@]}" --version >/dev/null 2>&1 || true
manifest() { (cd "$ROOTFS" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./var/lib/meshca \) -prune -o -printf '%p %y %s %m %u:%g %T@\n' | sort); }
manifest >"$WORK/rootfs.before"
mkdir -p "$WORK/run" "$ROOTFS/run"
chmod 0755 "$WORK/run"
mount --bind "$ROOTFS" "$ROOTFS"
MOUNTS+=("$ROOTFS")
mount -o remount,ro,bind "$ROOTFS"
mount --bind "$WORK/run" "$ROOTFS/run"
MOUNTS+=("$ROOTFS/run")

probe=$(run 60 "$RUN_NODE_BIN" -e '
  const fs = require("fs");
  const writes = ["/app/probe", "/tmp/probe", "/probe"].map((path) => {
    try { fs.writeFileSync(path, "x"); return "written"; } catch (err) { return err.code; }
  });
  fs.writeFileSync("/var/lib/meshca/probe", "x"); fs.rmSync("/var/lib/meshca/probe");
  process.stdout.write(`${process.getuid()}:${process.getgid()} ${writes.join(",")}`);') || fail "cannot run node in the image"
[[ $probe == "65532:65532 EROFS,EROFS,EROFS" ]] || fail "expected uid:gid 65532:65532 and a read-only root (EROFS), got: $probe"
log "runs as 65532:65532; /app, /tmp and / read-only (EROFS); /var/lib/meshca writable"

mapfile -t CMD < <(config Cmd)
run 60 "${ENTRYPOINT[@]}" "${CMD[@]}" >"$WORK/default.out" 2>&1 || { cat "$WORK/default.out" >&2; fail "the default command (${CMD[*]}) failed"; }
grep -q '^Usage: meshca' "$WORK/default.out" || fail "the default command printed no usage"
got=$(run 60 "${ENTRYPOINT[@]}" --version) || fail "meshca --version failed"
[[ $got == "$VERSION" ]] || fail "meshca --version printed '$got', package.json has $VERSION"
log "meshca --version: $got; the default command (${CMD[*]}) prints usage"

run 120 "${ENTRYPOINT[@]}" ca init --trust-domain image-test.example >"$WORK/init.log" 2>&1 ||
  { cat "$WORK/init.log" >&2; fail "meshca ca init failed"; }
for f in ca-cert.pem ca-key.pem root-cert.pem cert-chain.pem; do
  [[ -f $WORK/data/$f ]] || fail "ca init wrote no $f"
done
[[ $(stat -c %u "$WORK/data/ca-key.pem") == 65532 ]] || fail "ca-key.pem is not owned by 65532"
log "meshca ca init: $(ls "$WORK/data" | tr '\n' ' ')"

# Host network (chroot isolation): two free loopback ports, flags over the image's 0.0.0.0.
read -r GRPC_PORT HTTP_PORT < <(node -e '
  const net = require("net"); const ports = [];
  const next = () => { const s = net.createServer().listen(0, "127.0.0.1", () => {
    ports.push(s.address().port); s.close(() => ports.length < 2 ? next() : console.log(ports.join(" "))); }); };
  next();')
log "meshca ca serve on 127.0.0.1:$GRPC_PORT (gRPC) and 127.0.0.1:$HTTP_PORT (HTTPS)…"
run 300 "${ENTRYPOINT[@]}" ca serve --trust-domain image-test.example \
  --grpc-listen "127.0.0.1:$GRPC_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
  --signing-workers 1 >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVE_PID=$!
ready=""
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  kill -0 "$SERVE_PID" 2>/dev/null || break
  if code=$(curl -s -o "$WORK/readyz" -w '%{http_code}' --max-time 2 --cacert "$WORK/data/root-cert.pem" \
    "https://127.0.0.1:$HTTP_PORT/readyz") && [[ $code == 200 ]]; then
    ready=1
    break
  fi
  sleep 0.5
done
if [[ -z $ready ]]; then
  tail -n 20 "$WORK/serve.out" "$WORK/serve.err" >&2
  fail "ca serve did not become ready within 60s"
fi
grep -q "meshca CA ready: grpc port $GRPC_PORT, http port $HTTP_PORT" "$WORK/serve.out" || fail "no ready line on stdout"
log "GET /readyz: 200 $(head -c 200 "$WORK/readyz") (TLS verified against the CA's root-cert.pem)"

# SIGTERM the CA itself (as a kubelet would), then buildah run exits with its status.
signal_meshca TERM "$SERVE_PID" || fail "cannot find the CA's node process under buildah run ($SERVE_PID)"
serve_rc=0
timeout 30 tail --pid="$SERVE_PID" -f /dev/null || fail "ca serve did not stop within 30s of SIGTERM"
wait "$SERVE_PID" || serve_rc=$?
SERVE_PID=""
[[ $serve_rc == 0 ]] || { tail -n 20 "$WORK/serve.err" >&2; fail "ca serve exited $serve_rc after SIGTERM"; }
grep -q 'shutting down' "$WORK/serve.err" || fail "ca serve logged no shutdown"
log "SIGTERM: ca serve stopped, exit 0"

umount "$ROOTFS/run"
umount "$ROOTFS"
MOUNTS=()
[[ -z $(ls -A "$WORK/run") ]] || fail "something was left in /run: $(ls -A "$WORK/run")"
manifest >"$WORK/rootfs.after"
if ! diff -u "$WORK/rootfs.before" "$WORK/rootfs.after" >"$WORK/rootfs.diff"; then
  head -n 20 "$WORK/rootfs.diff" >&2
  fail "the root filesystem changed while the image ran"
fi
log "root filesystem unchanged; data dir: $(ls "$WORK/data" | tr '\n' ' ')"

log "image $IMAGE: $SIZE, build ${build_seconds}s"
log "ok ($SIZE)"
