/// How the kernel finds a process's (thread's) slot from its pid: by a direct
/// array over every possible pid, 4 bytes per pid of kernel.pid_max, or,
/// where that would be large, by a hash of the counted pids with a small
/// direct-mapped cache in front (bpf/cowtrace.h).
public enum PIDIndex: String, Sendable, CaseIterable {
    /// Direct up to `directLimit` pids, hashed above.
    case automatic
    case direct
    case hashed

    /// kernel.pid_max up to which the direct index is used: 1 MiB of index.
    public static let directLimit = 262_144

    /// The index used for this pid_max: direct or hashed.
    public func resolved(pidMax: Int) -> PIDIndex {
        switch self {
        case .automatic: return pidMax <= Self.directLimit ? .direct : .hashed
        default: return self
        }
    }

    /// The hashed index's cache: pairs (two pids each), a power of two with
    /// room for every slot.
    static func cachePairs(maxProcesses: UInt32) -> UInt32 {
        var pairs: UInt32 = 1024
        while pairs < maxProcesses { pairs <<= 1 }
        return pairs
    }
}
