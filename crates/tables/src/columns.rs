//! Column definitions, transcribed from upstream's
//! `pkg/printers/internalversion/printers.go` (`AddHandlers`).

use serde_json::{json, Value};

use crate::Kind;

pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const SELECTOR_DESC: &str = "A label query over pods that should match the replica count. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// One column: (name, type, format, priority, description).
type Col = (&'static str, &'static str, &'static str, i64, &'static str);

const NAME: Col = ("Name", "string", "name", 0, NAME_DESC);
const AGE: Col = ("Age", "string", "", 0, AGE_DESC);
const CONTAINERS: Col = ("Containers", "string", "", 1, CONTAINERS_DESC);
const IMAGES: Col = ("Images", "string", "", 1, IMAGES_DESC);
const SELECTOR: Col = ("Selector", "string", "", 1, SELECTOR_DESC);

const fn c(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    (name, ty, "", 0, desc)
}

const fn wide(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    (name, ty, "", 1, desc)
}

fn cols(kind: Kind) -> Vec<Col> {
    use Kind::*;
    match kind {
        Pod => vec![
            NAME,
            c("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            c("Status", "string", "The aggregate status of the containers in this pod."),
            c("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            wide("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName."),
            wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
            wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"),
        ],
        PodTemplate => vec![
            NAME,
            c("Containers", "string", CONTAINERS_DESC),
            c("Images", "string", IMAGES_DESC),
            c("Pod Labels", "string", "The labels for the pod template."),
        ],
        PodDisruptionBudget => vec![
            NAME,
            c("Min Available", "string", "The minimum number of pods that must be available."),
            c("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
            c("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
            AGE,
        ],
        ReplicationController | ReplicaSet => vec![
            NAME,
            c("Desired", "integer", "Replicas is the number of desired replicas."),
            c("Current", "integer", "Replicas is the most recently observed number of replicas."),
            c("Ready", "integer", "The number of ready replicas for this replica set."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        DaemonSet => vec![
            NAME,
            c("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
            c("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            c("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            c("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
            c("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            c("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        Job => vec![
            NAME,
            c("Status", "string", "Status of the job."),
            c("Completions", "string", "The number of pods which reached phase Succeeded."),
            c("Duration", "string", "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        CronJob => vec![
            NAME,
            c("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            c("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
            c("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
            c("Active", "integer", "A list of pointers to currently running jobs."),
            c("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        Service => vec![
            NAME,
            c("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP."),
            c("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
            c("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            c("Port(s)", "string", "The list of ports that are exposed by this service."),
            AGE,
            wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
        ],
        Ingress => vec![
            NAME,
            c("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
            c("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
            c("Address", "string", "Address is a list containing ingress points for the load-balancer"),
            c("Ports", "string", "Ports of TLS configurations that open"),
            AGE,
        ],
        IngressClass => vec![
            NAME,
            c("Controller", "string", "Controller that is responsible for handling this class"),
            c("Parameters", "string", "A reference to a resource with additional parameters"),
            AGE,
        ],
        StatefulSet => vec![
            NAME,
            c("Ready", "string", "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        Endpoints => vec![
            NAME,
            c("Endpoints", "string", "The set of all endpoints is the union of all subsets."),
            AGE,
        ],
        Node => vec![
            NAME,
            c("Status", "string", "The status of the node"),
            c("Roles", "string", "The roles of the node"),
            AGE,
            c("Version", "string", "Kubelet Version reported by the node."),
            wide("Internal-IP", "string", "List of addresses reachable to the node."),
            wide("External-IP", "string", "List of addresses reachable to the node."),
            wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        Event | EventsV1 => vec![
            c("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
            c("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
            c("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            c("Object", "string", "The object that this event is about."),
            wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
            wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
            c("Message", "string", "A human-readable description of the status of this operation."),
            wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
            wide("Count", "string", "The number of times this event has occurred."),
            ("Name", "string", "name", 1, NAME_DESC),
        ],
        Namespace => vec![
            NAME,
            c("Status", "string", "The status of the namespace"),
            AGE,
        ],
        Secret => vec![
            NAME,
            c("Type", "string", "Used to facilitate programmatic handling of secret data."),
            c("Data", "string", "Data contains the secret data."),
            AGE,
        ],
        ServiceAccount => vec![
            NAME,
            c("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            AGE,
        ],
        PersistentVolume => vec![
            NAME,
            c("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
            c("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
            c("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
            c("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
            c("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
            c("StorageClass", "string", "StorageClass of the pv"),
            c("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            c("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            AGE,
            wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
        ],
        PersistentVolumeClaim => vec![
            NAME,
            c("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
            c("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
            c("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
            c("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
            c("StorageClass", "string", "StorageClass of the pvc"),
            c("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            AGE,
            wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
        ],
        ComponentStatus => vec![
            NAME,
            c("Status", "string", "Status of the component conditions"),
            c("Message", "string", "Message of the component conditions"),
            c("Error", "string", "Error of the component conditions"),
        ],
        Deployment => vec![
            NAME,
            c("Ready", "string", "Number of the pod with ready state"),
            c("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            c("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
        ],
        ConfigMap => vec![
            NAME,
            c("Data", "string", "Data contains the configuration data."),
            AGE,
        ],
        NetworkPolicy => vec![
            NAME,
            c("Pod-Selector", "string", "Selects the pods to which this NetworkPolicy object applies."),
            AGE,
        ],
        RoleBinding | ClusterRoleBinding => vec![
            NAME,
            c("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
            AGE,
            wide("Users", "string", "Users in the roleBinding"),
            wide("Groups", "string", "Groups in the roleBinding"),
            wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
        ],
        CertificateSigningRequest => vec![
            NAME,
            AGE,
            c("SignerName", "string", "Requested signer for the request."),
            c("Requestor", "string", "Base64-encoded PKCS#10 CSR data"),
            c("RequestedDuration", "string", "expirationSeconds is the requested duration of validity of the issued certificate."),
            c("Condition", "string", "Conditions applied to the request, such as approval or denial."),
        ],
        Lease => vec![
            NAME,
            c("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."),
            AGE,
        ],
        StorageClass => vec![
            NAME,
            c("Provisioner", "string", "provisioner indicates the type of the provisioner."),
            c("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
            c("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
            c("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
            AGE,
        ],
        ControllerRevision => vec![
            NAME,
            c("Controller", "string", "Controller of the object"),
            c("Revision", "string", "Revision indicates the revision of the state represented by Data."),
            AGE,
        ],
        ResourceQuota => vec![
            NAME,
            c("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
            c("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
            AGE,
        ],
        PriorityClass => vec![
            NAME,
            c("Value", "integer", "value represents the integer value of this priority class."),
            c("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
            AGE,
            c("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
        ],
        RuntimeClass => vec![
            NAME,
            c("Handler", "string", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."),
            AGE,
        ],
        VolumeAttachment => vec![
            NAME,
            ("Attacher", "string", "name", 0, "attacher indicates the name of the volume driver that MUST handle this request."),
            c("PV", "string", "persistentVolumeName represents the name of the persistent volume to attach."),
            c("Node", "string", "nodeName represents the node that the volume should be attached to."),
            c("Attached", "boolean", "attached indicates the volume is successfully attached."),
            AGE,
        ],
        EndpointSlice => vec![
            NAME,
            c("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
            c("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
            c("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
            AGE,
        ],
        CSINode => vec![
            NAME,
            c("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"),
            AGE,
        ],
        CSIDriver => vec![
            NAME,
            c("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation."),
            c("PodInfoOnMount", "boolean", "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations."),
            c("StorageCapacity", "boolean", "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity."),
            c("TokenRequests", "string", "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication."),
            c("RequiresRepublish", "boolean", "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume."),
            c("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
            AGE,
        ],
        MutatingWebhookConfiguration | ValidatingWebhookConfiguration => vec![
            NAME,
            c("Webhooks", "integer", "Webhooks indicates the number of webhooks registered in this configuration"),
            AGE,
        ],
        DefaultCreatedAt => vec![NAME, ("Created At", "date", "", 0, AGE_DESC)],
        Unknown => vec![NAME, AGE],
    }
}

/// JSON column definitions for `kind`.
pub(crate) fn definitions(kind: Kind) -> Vec<Value> {
    cols(kind)
        .into_iter()
        .map(|(name, ty, format, priority, description)| {
            json!({
                "name": name,
                "type": ty,
                "format": format,
                "description": description,
                "priority": priority,
            })
        })
        .collect()
}
