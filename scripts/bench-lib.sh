# Shared by scripts/bench.sh and scripts/bench-data.sh (sourced, from the repository
# root): etcd installed when missing, braft's release binary built, the ports layout.
# Member N serves clients on 127.0.0.1:N2379 and its second port on N2380 (etcd: peers;
# braft: HTTP, as braft's RPORT carries both peers and clients); see `cport`.

# As root, installs Debian's etcd-server and etcd-client when etcd is missing.
need_etcd() {
  if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing etcd-server and etcd-client" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >/dev/null 2>&1; }
    fi
    command -v etcd >/dev/null && command -v etcdctl >/dev/null ||
      { echo "etcd not found: apt-get install -y etcd-server etcd-client" >&2; exit 1; }
  fi
  # systemd may have started Debian's own etcd on 2379; it is not ours and not in the way.
}

# Builds the release binary; sets BIN.
build_braft() {
  cargo build --release --quiet
  BIN=$PWD/target/release/braft
}

# Member N's ports: N2379 (clients) and N2380. A fourth member (bench-data.sh's joiner)
# takes 9379 and 9380 instead: 42379 would fall in the kernel's ephemeral range.
cport() { if [ "$1" -le 3 ]; then echo "${1}2379"; else echo 9379; fi; }
pport() { echo $(( $(cport "$1") + 1 )); }
client() { echo "127.0.0.1:$(cport "$1")"; }
