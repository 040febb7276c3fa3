/// pid (or tid) → a small index: a flat array for ids below 2^22 (the
/// ceiling of pid_max), a dictionary above. Looked up once per fault by the
/// simulated MMU (its tasks) and the kernel-class fold (threads' open
/// faults), so no hashing on those paths.
public struct PidIndex: Sendable {
    public static let flatLimit = 1 << 22
    /// index + 1 by id; 0: none.
    @usableFromInline var flat: [Int32] = []
    @usableFromInline var other: [Int32: Int] = [:]

    public init() {}

    public subscript(pid: Int32) -> Int? {
        @inlinable @inline(__always) get {
            let p = Int(pid)
            if p >= 0 && p < flat.count {
                let v = flat[p]
                return v == 0 ? nil : Int(v) &- 1
            }
            return p >= 0 && p < PidIndex.flatLimit ? nil : other[pid]
        }
        @inlinable set {
            let p = Int(pid)
            guard p >= 0 && p < PidIndex.flatLimit else {
                other[pid] = newValue
                return
            }
            let index = newValue.map { Int32(truncatingIfNeeded: $0 + 1) } ?? 0
            if p >= flat.count {
                guard index != 0 else { return }
                flat.append(contentsOf: repeatElement(0, count: min(PidIndex.flatLimit, max(p + 1, 2 * flat.count, 1024)) - flat.count))
            }
            flat[p] = index
        }
    }
}
