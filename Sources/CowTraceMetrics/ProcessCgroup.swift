import CowTraceFormat
import CowTraceKit
import Foundation

/// A process's cgroup as `serve --group-by cgroup` labels it: the cgroup v2
/// path ("0::" line of /proc/PID/cgroup) on a v2 host, the memory
/// controller's v1 path on a v1 or hybrid host; and the container id and pod
/// uid the path names, if it names them (docker, containerd, cri-o and podman
/// scopes; kubepods slices with the cgroupfs or the systemd driver).
public struct ProcessCgroup: Hashable, Sendable {
    public var path: String
    public var containerID: String?
    public var podUID: String?

    public init(path: String) {
        self.path = path
        containerID = Self.containerID(inPath: path)
        podUID = Self.podUID(inPath: path)
    }

    /// The path /proc/PID/cgroup gives for the hierarchy `version`, or nil
    /// (no such line: e.g. no memory controller on v1).
    public static func parse(procCgroup text: String, version: MemoryCgroupHierarchy.Version) -> String? {
        MemoryCgroupHierarchy.path(inProcCgroup: text, version: version)
    }

    /// Reads /proc/PID/cgroup: nil once the process is gone, and on a v1
    /// hierarchy also while it exits. There the kernel shows an exiting task
    /// (a zombie waiting for its parent) in the root cgroup, whatever cgroup
    /// it ran in (proc_cgroup_show): a short-lived process first seen then
    /// would put its copies under cgroup="/". nil sends `MetricsAggregator`
    /// to its parent's group instead. A v2 zombie keeps its path, with
    /// " (deleted)" appended once its cgroup is removed: the suffix is dropped.
    public static func read(pid: Int32, version: MemoryCgroupHierarchy.Version) -> ProcessCgroup? {
        guard let text = readPseudoFile("/proc/\(pid)/cgroup"), var path = parse(procCgroup: text, version: version) else { return nil }
        switch version {
        case .v1:
            // Read after the path: a task exiting when the path was read is exiting now.
            if ProcFS.isExiting(pid) { return nil }
        case .v2:
            if path.hasSuffix(deletedSuffix) { path.removeLast(deletedSuffix.count) }
        }
        return ProcessCgroup(path: path)
    }

    /// What /proc/PID/cgroup appends to a v2 zombie's path once its cgroup is removed.
    static let deletedSuffix = " (deleted)"

    /// The hierarchy whose paths label the groups: the memory controller's.
    public static let hostVersion: MemoryCgroupHierarchy.Version = MemoryCgroupHierarchy.live()?.version ?? .v2

    private static let containerPrefixes = ["docker-", "cri-containerd-", "crio-", "libpod-", "containerd-"]

    /// The 64-hex-digit id of the innermost path component that is a
    /// container: "docker-ID.scope", "cri-containerd-ID.scope", "crio-ID.scope",
    /// "libpod-ID.scope", or a bare ID (/docker/ID, /kubepods/.../ID).
    /// "crio-conmon-ID.scope" is cri-o's monitor, not the container.
    public static func containerID(inPath path: String) -> String? {
        for component in path.split(separator: "/").reversed() {
            var name = Substring(component)
            if name.hasSuffix(".scope") { name = name.dropLast(".scope".count) }
            for prefix in containerPrefixes where name.hasPrefix(prefix) {
                name = name.dropFirst(prefix.count)
                break
            }
            if name.count == 64, name.allSatisfy(\.isHexDigit) { return String(name).lowercased() }
        }
        return nil
    }

    /// The pod uid of a kubepods path: "pod" then a uuid, with dashes
    /// (cgroupfs driver: /kubepods/burstable/pod<uid>/...) or underscores
    /// (systemd driver: kubepods-burstable-pod<uid>.slice), given with dashes.
    public static func podUID(inPath path: String) -> String? {
        guard path.contains("kubepods") else { return nil }
        for component in path.split(separator: "/").reversed() {
            guard let range = component.range(of: "pod", options: .backwards) else { continue }
            var rest = component[range.upperBound...]
            if rest.hasSuffix(".slice") { rest = rest.dropLast(".slice".count) }
            let uid = rest.replacingOccurrences(of: "_", with: "-").lowercased()
            let groups = uid.split(separator: "-", omittingEmptySubsequences: false)
            if groups.map(\.count) == [8, 4, 4, 4, 12], uid.allSatisfy({ $0 == "-" || $0.isHexDigit }) { return uid }
        }
        return nil
    }
}
