#!/usr/bin/env bash
# A client certificate for the API server to present to the webhook (deploy/components/client-auth,
# `--client-ca`), with openssl only, and the two API server files that make it present it.
#
#   certs/apiserver-client-certs.sh [--renew] [--days N] [--ca-days N] [--namespace NS]
#                                   [--out DIR] [--files-dir DIR]
#
# Writes into --out (default certs/out/apiserver-client; keep it, the CA key signs renewals):
#   client-ca.crt, client-ca.key   the client CA: the webhook trusts client-ca.crt (--client-ca)
#   client.crt, client.key         the API server's client certificate (CN kube-apiserver)
#   kubeconfig                     user "*.<namespace>.svc" with that certificate: the API server
#                                  presents it to every webhook Service in the namespace
#   admission.yaml                 the AdmissionConfiguration that points the webhook admission
#                                  plugins at the kubeconfig
#   client-ca-configmap.yaml       the ConfigMap jupyter-xnat-webhook-client-ca (key ca.crt) the
#                                  client-auth component mounts
# --files-dir is where kubeconfig and admission.yaml will live on the control-plane nodes
# (default /etc/kubernetes/xnat-webhook); they name each other and the key files by that path.
# --renew makes a new client certificate from the same CA (the webhook needs no change).
# Generated files are never committed (certs/out/ is gitignored). README: Caller authentication.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
namespace=xnat-webhook out="" files_dir=/etc/kubernetes/xnat-webhook days=365 ca_days=1825 renew=0
while [ $# -gt 0 ]; do
  case "$1" in
    --renew) renew=1; shift ;;
    --days) days="$2"; shift 2 ;;
    --ca-days) ca_days="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --files-dir) files_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "apiserver-client-certs: unknown argument $1" >&2; exit 2 ;;
  esac
done
out="${out:-$root/certs/out/apiserver-client}"
command -v openssl >/dev/null || { echo "apiserver-client-certs: openssl is required" >&2; exit 1; }
mkdir -p "$out"
umask 077

if [ ! -s "$out/client-ca.key" ] || [ ! -s "$out/client-ca.crt" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -days "$ca_days" -subj "/CN=jupyter-xnat-webhook client CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$out/client-ca.key" -out "$out/client-ca.crt" 2>/dev/null
  renew=1
fi
if [ "$renew" = 1 ] || [ ! -s "$out/client.crt" ]; then
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -subj "/CN=kube-apiserver" -keyout "$out/client.key" -out "$out/client.csr" 2>/dev/null
  openssl x509 -req -sha256 -days "$days" -in "$out/client.csr" \
    -CA "$out/client-ca.crt" -CAkey "$out/client-ca.key" -CAcreateserial \
    -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n') \
    -out "$out/client.crt" 2>/dev/null
  rm -f "$out/client.csr"
fi

cat > "$out/kubeconfig" <<YAML
# The credentials the API server presents to admission webhooks (AdmissionConfiguration
# kubeConfigFile). The user name matches the webhook Service's DNS name, <service>.<ns>.svc.
apiVersion: v1
kind: Config
users:
  - name: "*.$namespace.svc"
    user:
      client-certificate: $files_dir/client.crt
      client-key: $files_dir/client.key
YAML
cat > "$out/admission.yaml" <<YAML
# kube-apiserver --admission-control-config-file=$files_dir/admission.yaml
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: MutatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: $files_dir/kubeconfig
  - name: ValidatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: $files_dir/kubeconfig
YAML
{
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: jupyter-xnat-webhook-client-ca\n'
  printf '  namespace: %s\ndata:\n  ca.crt: |\n' "$namespace"
  sed 's/^/    /' "$out/client-ca.crt"
} > "$out/client-ca-configmap.yaml"
chmod 644 "$out/client-ca.crt" "$out/client.crt" "$out/kubeconfig" "$out/admission.yaml" \
  "$out/client-ca-configmap.yaml"
echo "apiserver-client-certs: wrote $out (copy client.crt, client.key, kubeconfig and" \
  "admission.yaml to $files_dir on every control-plane node; kubectl apply -f" \
  "$out/client-ca-configmap.yaml)"
