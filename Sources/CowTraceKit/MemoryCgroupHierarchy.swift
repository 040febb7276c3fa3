import CowTraceFormat
import Foundation

/// Where this host's memory controller lives, found at run time from
/// /proc/self/mountinfo, never from a fixed path: hybrid hosts bind it to a
/// cgroup v1 hierarchy (often /sys/fs/cgroup/memory), systemd hosts and
/// kernels built without v1 memory (Debian's 6.12) have it in the cgroup2
/// hierarchy (often /sys/fs/cgroup). A memory cgroup's path, as the kernel's
/// kernfs names give it ("/system.slice/foo.service"), is relative to the
/// hierarchy's root.
public struct MemoryCgroupHierarchy: Sendable, Equatable {
    public enum Version: String, Sendable {
        case v1, v2
    }

    public let version: Version
    /// Where the hierarchy is mounted, e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup.
    public let mountPoint: String
    /// The hierarchy path the mount shows at its top (mountinfo's fourth
    /// field): "/" unless it is a bind mount of a sub-cgroup.
    public let mountRoot: String

    public init(version: Version, mountPoint: String, mountRoot: String = "/") {
        self.version = version
        self.mountPoint = mountPoint
        self.mountRoot = mountRoot
    }

    /// The hard limit: v2's memory.max ("max" when unlimited), v1's memory.limit_in_bytes.
    public var limitFile: String { version == .v2 ? "memory.max" : "memory.limit_in_bytes" }
    /// What the cgroup is charged now.
    public var usageFile: String { version == .v2 ? "memory.current" : "memory.usage_in_bytes" }
    /// v2's own swap limit. v1 has only memory+swap (memory.memsw.limit_in_bytes), a different figure.
    public var swapLimitFile: String? { version == .v2 ? "memory.swap.max" : nil }

    /// The directory of the cgroup at `path` in the hierarchy, or nil when
    /// the mount does not show it.
    public func directory(of path: String) -> String? {
        let relative: Substring
        if mountRoot == "/" {
            relative = Substring(path)
        } else if path == mountRoot || path.hasPrefix(mountRoot + "/") {
            relative = path.dropFirst(mountRoot.count)
        } else {
            return nil
        }
        let trimmed = relative.drop { $0 == "/" }
        return trimmed.isEmpty ? mountPoint : mountPoint + "/" + trimmed
    }

    /// The hierarchy path of a directory under the mount point, or nil if it is not under it.
    public func cgroupPath(ofDirectory directory: String) -> String? {
        let dir = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        let rest: Substring
        if dir == mountPoint {
            rest = ""
        } else if dir.hasPrefix(mountPoint + "/") {
            rest = dir.dropFirst(mountPoint.count)
        } else {
            return nil
        }
        if mountRoot == "/" { return rest.isEmpty ? "/" : String(rest) }
        return mountRoot + rest
    }

    /// A process's path in a hierarchy of `version`, from its /proc/PID/cgroup
    /// text: v2's "0::/path" line, or v1's memory-controller line; nil when
    /// there is no such line.
    public static func path(inProcCgroup text: String, version: Version) -> String? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            switch version {
            case .v2: if fields[0] == "0" && fields[1].isEmpty { return String(fields[2]) }
            case .v1: if fields[1].split(separator: ",").contains("memory") { return String(fields[2]) }
            }
        }
        return nil
    }

    /// A limit file's bytes; nil for "max" or v1's "no limit" (a page-rounded LONG_MAX).
    public static func parseLimit(_ text: String) -> UInt64? {
        guard let bytes = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes < (1 << 62) else { return nil }
        return bytes
    }

    /// The limit of the cgroup at `path`, in bytes (nil: unlimited or unreadable).
    public func limitBytes(ofCgroup path: String) -> UInt64? {
        directory(of: path).flatMap { readPseudoFile($0 + "/" + limitFile) }.flatMap(Self.parseLimit)
    }

    /// The memory controller's hierarchy on this host, or nil when none is mounted.
    public static func live() -> MemoryCgroupHierarchy? {
        let mountinfo = readPseudoFile("/proc/self/mountinfo") ?? ""
        return find(mountinfo: mountinfo) { readPseudoFile($0) }
    }

    /// A v1 mount with the memory option wins (memory cannot then be in v2);
    /// otherwise a cgroup2 mount whose cgroup.controllers lists memory
    /// (read through `read`: a v2 mount lists only what its cgroup's parent enabled).
    static func find(mountinfo: String, read: (String) -> String?) -> MemoryCgroupHierarchy? {
        var v2: [MemoryCgroupHierarchy] = []
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash >= 5, fields.count > dash + 3 else { continue }
            let root = unescape(fields[3]), mountPoint = unescape(fields[4])
            let type = fields[dash + 1], superOptions = fields[dash + 3].split(separator: ",")
            if type == "cgroup" && superOptions.contains("memory") {
                return MemoryCgroupHierarchy(version: .v1, mountPoint: mountPoint, mountRoot: root)
            }
            if type == "cgroup2" {
                v2.append(MemoryCgroupHierarchy(version: .v2, mountPoint: mountPoint, mountRoot: root))
            }
        }
        return v2.first { hierarchy in
            (read(hierarchy.mountPoint + "/cgroup.controllers") ?? "").split(whereSeparator: \.isWhitespace).contains("memory")
        }
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes ("\040").
    private static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        var i = field.utf8.startIndex
        let utf8 = field.utf8
        while i < utf8.endIndex {
            let digits = utf8[utf8.index(after: i)...].prefix(3)
            if utf8[i] == UInt8(ascii: "\\"), digits.count == 3, let value = UInt8(String(decoding: digits, as: UTF8.self), radix: 8) {
                bytes.append(value)
                i = utf8.index(i, offsetBy: 4)
            } else {
                bytes.append(utf8[i])
                i = utf8.index(after: i)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
