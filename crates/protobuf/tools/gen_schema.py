#!/usr/bin/env python3
"""Generate src/schema.txt, the message descriptors used by bosun-protobuf.

Inputs (both are crates.io packages; `cargo fetch` puts them in ~/.cargo/registry/src):
  * k8s-pb      : prost code generated from the Kubernetes generated.proto files.  It gives,
                  per message, every field's tag, wire type, cardinality and message type,
                  and (via its `Resource` impls) the apiVersion/kind -> message table.
  * k8s-openapi : serde code generated from the Kubernetes OpenAPI spec.  It gives the exact
                  JSON field names (prost snake_cases `podIP` to `pod_ip`, which cannot be
                  reversed), the real type names (`HostIP`, not `HostIp`) and which proto
                  fields are Go-inlined (`Volume.volumeSource`, `Probe.handler`, ...).

Usage: [VERBOSE=1] python3 tools/gen_schema.py [K8S_PB_DIR] [K8S_OPENAPI_DIR] > src/schema.txt
"""
import glob
import os
import re
import sys

REG = os.path.expanduser("~/.cargo/registry/src")


def find(name):
    hits = sorted(glob.glob(os.path.join(REG, "*", name)))
    if not hits:
        sys.exit(f"{name} not found under {REG}; run `cargo fetch` with it as a dependency")
    return hits[-1]


PB = sys.argv[1] if len(sys.argv) > 1 else find("k8s-pb-0.9.0")
OA = sys.argv[2] if len(sys.argv) > 2 else find("k8s-openapi-0.29.0")
OA_VER = sorted(d for d in os.listdir(os.path.join(OA, "src")) if d.startswith("v1_"))[-1]
OA_SRC = os.path.join(OA, "src", OA_VER)

# module path (tuple of rust module names) -> proto package
def package_of(mod):
    if mod[0] in ("api",):
        return "k8s.io." + ".".join(mod)
    return "k8s.io." + ".".join(mod)


# ---------- k8s-openapi: definition name -> json field names ----------
oa_types = {}  # (module tuple, lowercased type name) -> (real name, [json names])
for path in glob.glob(os.path.join(OA_SRC, "**", "*.rs"), recursive=True):
    text = open(path).read()
    m = re.search(r"^// Generated from definition ([\w.-]+)$", text, re.M)
    if not m:
        continue
    defn = m.group(1)  # io.k8s.api.core.v1.Volume
    if not defn.startswith("io.k8s."):
        continue
    parts = defn[len("io.k8s."):].split(".")
    name = parts[-1]
    # k8s-openapi module path for apiextensions is apiextensions_apiserver, as in k8s-pb
    rel = os.path.relpath(os.path.dirname(path), OA_SRC).split(os.sep)
    names = re.findall(r'^\s*"([^"]+)" => Field::Key_', text, re.M)
    oa_types[(tuple(rel), name.lower())] = (name, names)


def norm(s):
    return re.sub(r"[^0-9a-z]", "", s.lower())


# Scalar fields that are Go pointers (*int32, *bool, *string, ...).  Go (gogo) protobuf always
# writes non-pointer scalars, zero or not, so a zero value on the wire usually means "unset" and
# is dropped, as Go's `omitempty` JSON would.  For pointer fields a zero on the wire is an explicit
# value (`replicas: 0`, `automountServiceAccountToken: false`) and must be kept.  The .proto files
# do not record pointer-ness; this list is taken from the Go types (k8s.io/api types.go).
POINTER_FIELDS = {
    "apimachinery.pkg.apis.meta.v1.ObjectMeta": "deletionGracePeriodSeconds",
    "apimachinery.pkg.apis.meta.v1.OwnerReference": "controller blockOwnerDeletion",
    "apimachinery.pkg.apis.meta.v1.DeleteOptions": "gracePeriodSeconds orphanDependents propagationPolicy ignoreStoreReadErrorWithClusterBreakingPotential",
    "apimachinery.pkg.apis.meta.v1.Preconditions": "uid resourceVersion",
    "apimachinery.pkg.apis.meta.v1.ListMeta": "remainingItemCount",
    "apimachinery.pkg.apis.meta.v1.PatchOptions": "force",
    "api.core.v1.ConfigMap": "immutable",
    "api.core.v1.Secret": "immutable",
    "api.core.v1.ServiceAccount": "automountServiceAccountToken",
    "api.core.v1.PodSpec": "terminationGracePeriodSeconds activeDeadlineSeconds automountServiceAccountToken shareProcessNamespace priority enableServiceLinks preemptionPolicy runtimeClassName setHostnameAsFQDN hostUsers hostnameOverride",
    "api.core.v1.Container": "restartPolicy",
    "api.core.v1.ContainerStatus": "started",
    "api.core.v1.SecurityContext": "privileged runAsUser runAsGroup runAsNonRoot readOnlyRootFilesystem allowPrivilegeEscalation procMount",
    "api.core.v1.PodSecurityContext": "runAsUser runAsGroup runAsNonRoot fsGroup fsGroupChangePolicy supplementalGroupsPolicy seLinuxChangePolicy",
    "api.core.v1.WindowsSecurityContextOptions": "gmsaCredentialSpecName gmsaCredentialSpec runAsUserName hostProcess",
    "api.core.v1.SeccompProfile": "localhostProfile",
    "api.core.v1.AppArmorProfile": "localhostProfile",
    "api.core.v1.Probe": "terminationGracePeriodSeconds",
    "api.core.v1.GRPCAction": "service",
    "api.core.v1.VolumeMount": "mountPropagation recursiveReadOnly",
    "api.core.v1.Toleration": "tolerationSeconds",
    "api.core.v1.TopologySpreadConstraint": "minDomains nodeAffinityPolicy nodeTaintsPolicy",
    "api.core.v1.PodDNSConfigOption": "value",
    "api.core.v1.PodResourceClaim": "resourceClaimName resourceClaimTemplateName",
    "api.core.v1.ConfigMapKeySelector": "optional",
    "api.core.v1.SecretKeySelector": "optional",
    "api.core.v1.ConfigMapEnvSource": "optional",
    "api.core.v1.SecretEnvSource": "optional",
    "api.core.v1.ConfigMapVolumeSource": "defaultMode optional",
    "api.core.v1.SecretVolumeSource": "defaultMode optional",
    "api.core.v1.ProjectedVolumeSource": "defaultMode",
    "api.core.v1.DownwardAPIVolumeSource": "defaultMode",
    "api.core.v1.KeyToPath": "mode",
    "api.core.v1.DownwardAPIVolumeFile": "mode",
    "api.core.v1.ConfigMapProjection": "optional",
    "api.core.v1.SecretProjection": "optional",
    "api.core.v1.ServiceAccountTokenProjection": "expirationSeconds",
    "api.core.v1.ClusterTrustBundleProjection": "name signerName optional",
    "api.core.v1.HostPathVolumeSource": "type",
    "api.core.v1.CSIVolumeSource": "readOnly fsType",
    "api.core.v1.ISCSIVolumeSource": "initiatorName",
    "api.core.v1.FCVolumeSource": "lun",
    "api.core.v1.AzureDiskVolumeSource": "cachingMode fsType readOnly kind",
    "api.core.v1.PersistentVolumeClaimSpec": "storageClassName volumeMode volumeAttributesClassName",
    "api.core.v1.PersistentVolumeSpec": "volumeMode volumeAttributesClassName",
    "api.core.v1.ServiceSpec": "allocateLoadBalancerNodePorts loadBalancerClass internalTrafficPolicy ipFamilyPolicy trafficDistribution",
    "api.core.v1.ServicePort": "appProtocol",
    "api.core.v1.ClientIPConfig": "timeoutSeconds",
    "api.core.v1.EndpointPort": "appProtocol",
    "api.core.v1.EndpointAddress": "nodeName",
    "api.core.v1.LoadBalancerIngress": "ipMode",
    "api.core.v1.PortStatus": "error",
    "api.apps.v1.DeploymentSpec": "replicas revisionHistoryLimit progressDeadlineSeconds",
    "api.apps.v1.DeploymentStatus": "collisionCount terminatingReplicas",
    "api.apps.v1.ReplicaSetSpec": "replicas",
    "api.apps.v1.ReplicaSetStatus": "terminatingReplicas",
    "api.apps.v1.StatefulSetSpec": "replicas revisionHistoryLimit",
    "api.apps.v1.StatefulSetStatus": "collisionCount",
    "api.apps.v1.RollingUpdateStatefulSetStrategy": "partition",
    "api.apps.v1.DaemonSetSpec": "revisionHistoryLimit",
    "api.apps.v1.DaemonSetStatus": "collisionCount",
    "api.batch.v1.JobSpec": "parallelism completions activeDeadlineSeconds backoffLimit backoffLimitPerIndex maxFailedIndexes ttlSecondsAfterFinished manualSelector suspend completionMode podReplacementPolicy managedBy",
    "api.batch.v1.JobStatus": "ready failedIndexes terminating",
    "api.batch.v1.CronJobSpec": "timeZone startingDeadlineSeconds suspend successfulJobsHistoryLimit failedJobsHistoryLimit",
    "api.batch.v1.PodFailurePolicyOnExitCodesRequirement": "containerName",
    "api.coordination.v1.LeaseSpec": "holderIdentity leaseDurationSeconds leaseTransitions strategy preferredHolder",
    "api.discovery.v1.Endpoint": "hostname nodeName zone",
    "api.discovery.v1.EndpointConditions": "ready serving terminating",
    "api.discovery.v1.EndpointPort": "name protocol port appProtocol",
    "api.policy.v1.PodDisruptionBudgetSpec": "unhealthyPodEvictionPolicy",
    "api.scheduling.v1.PriorityClass": "preemptionPolicy",
    "api.autoscaling.v1.HorizontalPodAutoscalerSpec": "minReplicas targetCPUUtilizationPercentage",
    "api.autoscaling.v1.HorizontalPodAutoscalerStatus": "observedGeneration currentCPUUtilizationPercentage",
    "api.networking.v1.NetworkPolicyPort": "protocol endPort",
    "api.networking.v1.IngressSpec": "ingressClassName",
    "api.networking.v1.HTTPIngressPath": "pathType",
    "api.networking.v1.IngressClassParametersReference": "apiGroup scope namespace",
    "api.networking.v1.IngressPortStatus": "error",
    "api.storage.v1.StorageClass": "reclaimPolicy allowVolumeExpansion volumeBindingMode",
    "api.storage.v1.CSIDriverSpec": "attachRequired podInfoOnMount storageCapacity requiresRepublish seLinuxMount fsGroupPolicy nodeAllocatableUpdatePeriodSeconds",
    "api.storage.v1.VolumeAttachmentSource": "persistentVolumeName",
    "api.certificates.v1.CertificateSigningRequestSpec": "expirationSeconds",
    "api.authentication.v1.TokenRequestSpec": "expirationSeconds",
}
POINTERS = {f"k8s.io.{m}.{f}" for m, fs in POINTER_FIELDS.items() for f in fs.split()}

# ---------- k8s-pb ----------
ATTR = re.compile(r"#\[prost\(([^)]*)\)\]")
messages = {}  # full proto name -> list of fields
order = []
resources = []  # (apiVersion, kind, full name)
gv_module = {}  # apiVersion -> module


def resolve(mod, ty):
    """Resolve a rust type path used in module `mod` to a (module, type name)."""
    ty = ty.strip()
    for w in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while ty.startswith(w):
            ty = ty[len(w):-1].strip().rstrip(",").strip()
    segs = [s for s in ty.split("::") if s]
    cur = list(mod)
    if segs[0] == "crate":
        cur = []
        segs = segs[1:]
    while segs and segs[0] == "super":
        cur.pop()
        segs = segs[1:]
    return tuple(cur + segs[:-1]), segs[-1]


def split_generic_args(ty):
    inner = ty[ty.index("<") + 1: ty.rindex(">")]
    depth, parts, cur = 0, [], ""
    for ch in inner:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip().rstrip(",").strip() for p in parts if p.strip()]


raw_structs = []  # (mod, rustname, [(attr, fieldname, type)])
for path in sorted(glob.glob(os.path.join(PB, "src", "**", "*.rs"), recursive=True)):
    rel = os.path.relpath(path, os.path.join(PB, "src"))
    if rel == "lib.rs":
        continue
    mod = tuple(os.path.dirname(rel).split(os.sep))
    lines = [l for l in open(path).read().split("\n") if not l.strip().startswith("//")]
    i = 0
    cur = None
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^pub struct (\w+) \{", line)
        if m:
            cur = (mod, m.group(1), [])
            raw_structs.append(cur)
            i += 1
            continue
        if cur is not None and line.startswith("}"):
            cur = None
        m = ATTR.search(line) if cur is not None else None
        if m:
            attr = m.group(1)
            # field declaration may span several lines
            j = i + 1
            decl = ""
            while True:
                decl += " " + lines[j].strip()
                if decl.count("<") == decl.count(">") and decl.rstrip().endswith(","):
                    break
                j += 1
            fm = re.match(r"\s*pub (?:r#)?(\w+):\s*(.*),$", decl)
            cur[2].append((attr, fm.group(1), fm.group(2).strip()))
            i = j + 1
            continue
        m = re.match(r"^impl crate::Resource for (\w+) \{", line)
        if m:
            body = "\n".join(lines[i:i + 8])
            av = re.search(r'API_VERSION: &\'static str = "([^"]*)"', body).group(1)
            kind = re.search(r'KIND: &\'static str = "([^"]*)"', body).group(1)
            resources.append((av, kind, mod, m.group(1)))
            gv_module[av] = mod
        i += 1


def real_name(mod, rustname):
    hit = oa_types.get((mod, rustname.lower()))
    return hit[0] if hit else rustname


def full(mod, rustname):
    return package_of(mod) + "." + real_name(mod, rustname)


def camel(snake):
    p = snake.split("_")
    return p[0] + "".join(x[:1].upper() + x[1:] for x in p[1:])


SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
           "fixed32", "fixed64", "sfixed32", "sfixed64", "double", "float"}

pb_fields = {(m, n): [f[1] for f in fs] for m, n, fs in raw_structs}
pb_structs = {(m, n): fs for m, n, fs in raw_structs}


def flat_fields(mod, name, depth=0):
    """Normalized field names of a pb message, looking through nested messages that are
    not OpenAPI definitions (candidates for Go inlining)."""
    out = set()
    for attr, fld, ty in pb_structs.get((mod, name), []):
        if attr.startswith("message") and depth < 3:
            tmod, tname = resolve(mod, ty)
            if (tmod, tname.lower()) not in oa_types:
                out |= flat_fields(tmod, tname, depth + 1)
                continue
        out.add(norm(fld))
    return out


unmatched = []
used_pointers = set()
out_msgs = []
for mod, rustname, fields in raw_structs:
    fname = full(mod, rustname)
    oa = oa_types.get((mod, rustname.lower()))
    json_by_norm = {norm(n): n for n in (oa[1] if oa else [])}
    flines = []
    for attr, fld, ty in fields:
        a = [x.strip() for x in re.split(r",(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", attr)]
        tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
        kind = a[0].split("=")[0].strip()
        flags = ""
        if kind in ("btree_map", "map", "hash_map"):
            kv = re.search(r'map = "([^"]*)"', attr).group(1).split(",")
            kk, vk = kv[0].strip(), kv[1].strip()
            card = "m"
            if vk == "message":
                vmod, vname = resolve(mod, split_generic_args(ty)[1])
                typ = "map:" + kk + ":" + full(vmod, vname)
            else:
                typ = "map:" + kk + ":" + vk
        else:
            card = "r" if "repeated" in a else "o"
            if kind == "message":
                tmod, tname = resolve(mod, ty)
                typ = full(tmod, tname)
            else:
                assert kind in SCALARS, (kind, fname, fld)
                typ = kind
        json = json_by_norm.get(norm(fld))
        if json is None:
            if oa and kind == "message" and card == "o":
                child = flat_fields(tmod, tname)
                if child and child <= set(json_by_norm):
                    # Go-inlined struct: its fields live in the parent JSON object
                    flags = "i"
            json = camel(fld)
            if oa and not flags:
                unmatched.append(f"{fname}.{fld}")
        if f"{fname}.{json}" in POINTERS:
            assert card == "o" and kind != "message", (fname, json)
            flags = "p"
            used_pointers.add(f"{fname}.{json}")
        flines.append(f"{tag} {json} {card} {typ}" + (f" {flags}" if flags else ""))
    out_msgs.append((fname, flines))

print(f"# Generated by tools/gen_schema.py from {os.path.basename(PB)} and "
      f"{os.path.basename(OA)} ({OA_VER}). Do not edit.")
print("# R apiVersion kind message | M message | tag json cardinality(o/r/m) type [i=inline]")
seen = set()
for av, kind, mod, rustname in resources:
    key = (av, kind)
    if key in seen:
        continue
    seen.add(key)
    print(f"R {av} {kind} {full(mod, rustname)}")
for av, mod in sorted(gv_module.items()):
    print(f"G {av} {package_of(mod)}")
for fname, flines in out_msgs:
    print(f"M {fname}")
    for l in flines:
        print(l)
missing = POINTERS - used_pointers
if missing:
    sys.exit("POINTER_FIELDS entries not found: " + ", ".join(sorted(missing)))
VERBOSE = os.environ.get("VERBOSE")
for u in unmatched if VERBOSE else []:
    print("unmatched:", u, file=sys.stderr)
for mod, rustname, fields in raw_structs if VERBOSE else []:
    if (mod, rustname.lower()) not in oa_types:
        print("no-openapi:", full(mod, rustname), [camel(f[1]) for f in fields], file=sys.stderr)
