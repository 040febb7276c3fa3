import CBPF
import CowTraceFaultClass

/// One ring-buffer record from the kernel.
public struct FaultEvent: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case writeProtectFault = 1, resolve = 2, fork = 3, exec = 4, exit = 5
    }

    /// The kernel's class (the one fault-class type; its raw values are enum cowtrace_fault_class).
    public typealias FaultClass = CowTraceFaultClass.FaultClass

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
        faultClass = FaultClass(kernel: raw.class_) ?? .other
        pid = Int32(bitPattern: raw.pid)
        tid = Int32(bitPattern: raw.tid)
        address = raw.address
        instructionPointer = raw.ip
        otherPID = Int32(bitPattern: raw.other_pid)
        comm = cString(raw.comm)
    }
}
