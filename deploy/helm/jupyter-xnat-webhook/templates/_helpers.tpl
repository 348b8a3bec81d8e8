{{/*
Names are fixed, as in deploy/ (kustomize): the MutatingWebhookConfiguration is cluster-wide, so a
cluster runs one webhook, and every object keeps the name the docs and alerts use.
*/}}
{{- define "jxw.name" -}}jupyter-xnat-webhook{{- end }}

{{/* The labels every object carries (kustomize's base sets the first two). */}}
{{- define "jxw.labels" -}}
app.kubernetes.io/name: jupyter-xnat-webhook
app.kubernetes.io/part-of: jupyter-xnat-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The webhook pods: the selector of the Deployment, Service, PDB and NetworkPolicy. */}}
{{- define "jxw.selectorLabels" -}}
app.kubernetes.io/name: jupyter-xnat-webhook
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "jxw.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The hub's service account as the API server names it: the only requester acted on. */}}
{{- define "jxw.requester" -}}
{{- $name := "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" -}}
{{- if not (regexMatch $name .Values.hub.namespace) -}}
{{- fail (printf "hub.namespace: %q is not a namespace name" .Values.hub.namespace) -}}
{{- end -}}
{{- if not (regexMatch $name .Values.hub.serviceAccount) -}}
{{- fail (printf "hub.serviceAccount: %q is not a service account name" .Values.hub.serviceAccount) -}}
{{- end -}}
{{- if has .Values.hub.namespace (list "kube-system" .Release.Namespace) -}}
{{- fail (printf "hub.namespace: %q: the webhook never acts on pods in kube-system or its own namespace; install it in a namespace of its own" .Values.hub.namespace) -}}
{{- end -}}
system:serviceaccount:{{ .Values.hub.namespace }}:{{ .Values.hub.serviceAccount }}
{{- end }}

{{- define "jxw.tlsSecret" -}}
{{- if eq .Values.certificates.mode "existing" -}}
{{ required "certificates.existing.secretName: the kubernetes.io/tls Secret to serve with" .Values.certificates.existing.secretName }}
{{- else -}}
jupyter-xnat-webhook-tls
{{- end }}
{{- end }}

{{- define "jxw.credentialsSecret" -}}
{{- if .Values.xnat.credentials.create -}}
jupyter-xnat-webhook-xnat-credentials
{{- else -}}
{{ required "xnat.credentials.existingSecret (or xnat.credentials.create with username and password)" .Values.xnat.credentials.existingSecret }}
{{- end }}
{{- end }}

{{- define "jxw.archiveView" -}}
{{- if or .Values.archiveView.enabled (eq .Values.preset "nrgxnat") }}true{{ end }}
{{- end }}

{{/*
The policy file: the preset, `policy` over it (maps merge, lists replace, and so do the maps the
policy itself replaces when given: env, userOptions.env, pods.labels), then xnat.url and the
claims. pods.requesters is not written here: the Deployment's PODS_REQUESTERS replaces it with
the hub's service account, as in deploy/ (kustomize cannot reach into the policy's text).
*/}}
{{- define "jxw.policy" -}}
{{- $preset := dict -}}
{{- if eq .Values.preset "generic" -}}
{{- $preset = .Files.Get "files/policy-generic.yaml" | fromYaml -}}
{{- else if eq .Values.preset "nrgxnat" -}}
{{- $preset = .Files.Get "files/policy-nrgxnat.yaml" | fromYaml -}}
{{- else if ne .Values.preset "none" -}}
{{- fail (printf "preset: %q is not one of generic, nrgxnat, none" .Values.preset) -}}
{{- end -}}
{{- $own := deepCopy (.Values.policy | default dict) -}}
{{- if and (hasKey $own "pods") (hasKey $own.pods "requesters") -}}
{{- fail "policy.pods.requesters: set hub.namespace and hub.serviceAccount instead (the Deployment's PODS_REQUESTERS replaces the policy's list)" -}}
{{- end -}}
{{- if and (hasKey $own "xnat") (hasKey $own.xnat "url") -}}
{{- fail "policy.xnat.url: set xnat.url instead" -}}
{{- end -}}
{{- $policy := mergeOverwrite $preset (deepCopy $own) -}}
{{- /* Maps the policy replaces when given (env, userOptions.env, pods.labels) replace the preset's too. */ -}}
{{- if hasKey $own "env" }}{{ $_ := set $policy "env" $own.env }}{{ end -}}
{{- if and (hasKey $own "userOptions") (hasKey $own.userOptions "env") }}{{ $_ := set $policy.userOptions "env" $own.userOptions.env }}{{ end -}}
{{- if and (hasKey $own "pods") (hasKey $own.pods "labels") }}{{ $_ := set $policy.pods "labels" $own.pods.labels }}{{ end -}}
{{- $_ := set $policy "xnat" (merge (dict "url" .Values.xnat.url) ($policy.xnat | default dict)) -}}
{{- $_ := set $policy.xnat "url" .Values.xnat.url -}}
{{- if .Values.claims -}}
{{- $volumes := list -}}
{{- $named := dict -}}
{{- range (($policy.storage | default dict).volumes | default list) -}}
{{- $volume := deepCopy . -}}
{{- if hasKey $.Values.claims $volume.name -}}
{{- $_ := set $volume "claimName" (get $.Values.claims $volume.name) -}}
{{- $_ := set $named $volume.name true -}}
{{- end -}}
{{- $volumes = append $volumes $volume -}}
{{- end -}}
{{- range $name, $claim := .Values.claims -}}
{{- if not (hasKey $named $name) -}}
{{- fail (printf "claims.%s: the policy has no storage.volumes entry named %q" $name $name) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $policy.storage "volumes" $volumes -}}
{{- end -}}
{{- if and .Values.hub.userNamespaces (($policy.pods | default dict).namespaces) -}}
{{- fail "hub.userNamespaces: the policy's pods.namespaces must stay empty (any namespace the webhook is called for)" -}}
{{- end -}}
{{- toYaml $policy -}}
{{- end }}

{{/* Whether the merged policy posts Events (policy events.enabled, on by default). */}}
{{- define "jxw.events" -}}
{{- $policy := include "jxw.policy" . | fromYaml -}}
{{- $events := $policy.events | default dict -}}
{{- if or (not (hasKey $events "enabled")) $events.enabled }}true{{ end }}
{{- end }}

{{/*
The generated serving pair, base64 (crt, key, ca): the Secret already in the cluster when there
is one (`lookup`; so `helm upgrade` never replaces it), else a new CA and certificate. Called
once per render (mutatingwebhookconfiguration.yaml), for both the Secret and the caBundle.
*/}}
{{- define "jxw.generatedTls" -}}
{{- $found := lookup "v1" "Secret" .Release.Namespace "jupyter-xnat-webhook-tls" -}}
{{- $pair := dict -}}
{{- if and $found $found.data (index $found.data "tls.crt") (index $found.data "tls.key") (index $found.data "ca.crt") -}}
{{- $pair = dict "crt" (index $found.data "tls.crt") "key" (index $found.data "tls.key") "ca" (index $found.data "ca.crt") -}}
{{- else -}}
{{- $service := printf "jupyter-xnat-webhook.%s.svc" .Release.Namespace -}}
{{- $ca := genCA "jupyter-xnat-webhook CA" 3650 -}}
{{- $cert := genSignedCert $service nil (list $service (printf "%s.cluster.local" $service)) (int .Values.certificates.generated.days) $ca -}}
{{- $pair = dict "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) "ca" ($ca.Cert | b64enc) -}}
{{- end -}}
{{- toYaml $pair -}}
{{- end }}
