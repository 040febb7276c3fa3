import CBPF

/// One ring-buffer record from the kernel.
public struct FaultEvent: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case writeProtectFault = 1, resolve = 2, fork = 3, exec = 4, exit = 5
    }

    public enum FaultClass: UInt8, Sendable, CustomStringConvertible {
        case unresolved = 0, copy = 1, reuse = 2, zeroFill = 3, fileCopy = 4, sharedWrite = 5, other = 6

        public var description: String {
            switch self {
            case .unresolved: return "pending"
            case .copy: return "copy"
            case .reuse: return "reuse"
            case .zeroFill: return "zero-fill"
            case .fileCopy: return "file-copy"
            case .sharedWrite: return "shared-write"
            case .other: return "other"
            }
        }
    }

    public var timestampNanoseconds: UInt64
    public var kind: Kind?
    public var faultClass: FaultClass
    public var pid: Int32
    public var tid: Int32
    public var address: UInt64
    public var instructionPointer: UInt64
    /// fork: the child's pid; exit: the exit code.
    public var otherPID: Int32
    public var comm: String

    public init(_ raw: cowtrace_event) {
        timestampNanoseconds = raw.ts_ns
        kind = Kind(rawValue: raw.type)
        faultClass = FaultClass(rawValue: raw.class_) ?? .other
        pid = Int32(bitPattern: raw.pid)
        tid = Int32(bitPattern: raw.tid)
        address = raw.address
        instructionPointer = raw.ip
        otherPID = Int32(bitPattern: raw.other_pid)
        comm = cString(raw.comm)
    }
}
