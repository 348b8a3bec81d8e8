#!/usr/bin/env bash
# Makes a private CA and a serving certificate signed by it, with openssl only.
#
#   certs/gen-certs.sh --out DIR [--service NAME --namespace NS] [--dns NAME]... [--ip ADDR]...
#                      [--days N] [--ca-days N] [--force | --reuse-ca]
#
# --service/--namespace add <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local
# (the names the API server calls a webhook Service by). Writes DIR/ca.crt, DIR/ca.key, DIR/tls.crt,
# DIR/tls.key. Existing files are kept unless --force (new CA and certificate) or --reuse-ca (keep
# DIR/ca.crt and DIR/ca.key, issue a new certificate and key from them). --days is the certificate's
# lifetime (365), --ca-days the CA's (default: --days). Nothing here is ever committed.
set -euo pipefail

out="" service="" namespace="" days=365 ca_days="" force=0 reuse_ca=0
dns=() ips=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --service) service="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --dns) dns+=("$2"); shift 2 ;;
    --ip) ips+=("$2"); shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --ca-days) ca_days="$2"; shift 2 ;;
    --force) force=1; shift ;;
    --reuse-ca) reuse_ca=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "gen-certs: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "gen-certs: --out DIR is required" >&2; exit 2; }
[ "$force" -eq 0 ] || [ "$reuse_ca" -eq 0 ] || { echo "gen-certs: --force and --reuse-ca exclude each other" >&2; exit 2; }
ca_days="${ca_days:-$days}"
if [ -n "$service" ] || [ -n "$namespace" ]; then
  [ -n "$service" ] && [ -n "$namespace" ] || { echo "gen-certs: --service and --namespace go together" >&2; exit 2; }
  dns+=("$service.$namespace.svc" "$service.$namespace.svc.cluster.local")
fi
[ ${#dns[@]} -gt 0 ] || [ ${#ips[@]} -gt 0 ] || { echo "gen-certs: give --service/--namespace, --dns or --ip" >&2; exit 2; }

if [ "$force" -eq 0 ] && [ "$reuse_ca" -eq 0 ] && [ -s "$out/tls.crt" ] && [ -s "$out/tls.key" ] && [ -s "$out/ca.crt" ]; then
  echo "gen-certs: $out already has a certificate (use --force to replace it)"
  exit 0
fi
mkdir -p "$out"
umask 077

san=""
for d in "${dns[@]}"; do san="${san:+$san,}DNS:$d"; done
for i in "${ips[@]}"; do san="${san:+$san,}IP:$i"; done
cn="${dns[0]:-${ips[0]}}"

if [ "$reuse_ca" -eq 1 ] && [ -s "$out/ca.crt" ] && [ -s "$out/ca.key" ]; then
  echo "gen-certs: keeping the CA in $out/ca.crt"
else
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$ca_days" \
    -subj "/CN=jupyter-xnat-webhook CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
fi
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$cn" \
  -keyout "$out/tls.key" -out "$out/tls.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san" > "$out/tls.ext"
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days "$days" -sha256 -extfile "$out/tls.ext" -out "$out/tls.crt" 2>/dev/null
rm -f "$out/tls.csr" "$out/tls.ext" "$out/ca.srl"
chmod 644 "$out/ca.crt" "$out/tls.crt"
echo "gen-certs: wrote $out/{ca.crt,ca.key,tls.crt,tls.key} for $san"
