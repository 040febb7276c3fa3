// FaultClass, the one fault-class type (the kernel's classes and the
// simulator's own outcomes), is in CowTraceFaultClass, re-exported here.
@_exported import CowTraceFaultClass

/// Fault counts by class.
public struct FaultCounts: Equatable, Sendable {
    /// Starts as one shared array of zeros: an empty count (every fault's AccessResult) allocates nothing.
    public private(set) var counts = FaultCounts.zeros
    private static let zeros = [Int](repeating: 0, count: FaultClass.count)
    public init() {}
    public subscript(_ c: FaultClass) -> Int {
        get { counts[c.index] }
        set { counts[c.index] = newValue }
    }
    public var total: Int { counts.reduce(0, +) }
    /// copy + ksm-copy + file-copy.
    public var copies: Int { self[.copy] + self[.ksmCopy] + self[.fileCopy] }
    mutating func add(_ raw: UnsafeMutablePointer<Int>) {
        // One uniqueness check for the whole array, not one per class (once per simulated fault).
        counts.withUnsafeMutableBufferPointer { c in
            for i in c.indices { c[i] += raw[i] }
        }
    }

    public static func += (lhs: inout FaultCounts, rhs: FaultCounts) {
        for i in lhs.counts.indices { lhs.counts[i] += rhs.counts[i] }
    }
}

/// One handled fault, in the terms the tracer records.
public struct FaultRecord: Equatable, Sendable {
    public var pid: Int32
    public var address: UInt64
    /// The x86 error code the CPU would push: 0x1 present, 0x2 write, 0x4 user.
    public var errorCode: UInt32
    public var faultClass: FaultClass
    /// The fault hit a huge PMD (the tracer's thp_wp_faults when it is a write-protect fault).
    public var onHugePMD: Bool = false

    public init(pid: Int32, address: UInt64, errorCode: UInt32, faultClass: FaultClass, onHugePMD: Bool = false) {
        self.pid = pid
        self.address = address
        self.errorCode = errorCode
        self.faultClass = faultClass
        self.onHugePMD = onHugePMD
    }

    /// Present and write (error code bits 0x1 and 0x2): what the tracer calls a write-protect fault.
    public var isWriteProtectFault: Bool { errorCode & 0x3 == 0x3 }
}

/// The x86 page-fault error code bits.
public enum FaultErrorCode {
    public static let protection: UInt32 = 0x1
    public static let write: UInt32 = 0x2
    public static let user: UInt32 = 0x4
}
