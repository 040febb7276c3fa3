import CowTraceFaultClass

/// A value per pid, as a dictionary would hold them, but found through a
/// `PidIndex` (a flat array for real pids): the replay looks up the process
/// row and the pid's state once or twice per fault, and hashing an Int32 key
/// costs more there than the rest of the lookup. Values live in a dense array
/// in the order their pids were added (a removed pid's slot is reused).
struct PidTable<Value> {
    private var index = PidIndex()
    private var slots: [Value?] = []
    private var free: [Int] = []

    init() {}

    /// `pid`'s value, nil when it has none; setting nil removes it.
    subscript(pid: Int32) -> Value? {
        @inline(__always) get {
            guard let i = index[pid] else { return nil }
            return slots[i]
        }
        set {
            if let i = index[pid] {
                if let newValue {
                    slots[i] = newValue
                } else {
                    index[pid] = nil
                    slots[i] = nil
                    free.append(i)
                }
            } else if let newValue {
                insert(pid, newValue)
            }
        }
    }

    /// `pid`'s value, made `defaultValue` first when it has none; changed in place.
    subscript(pid: Int32, default defaultValue: @autoclosure () -> Value) -> Value {
        get { self[pid] ?? defaultValue() }
        _modify {
            let i = index[pid] ?? insert(pid, defaultValue())
            yield &slots[i]!
        }
    }

    /// The slot of `pid`'s value, nil when it has none: valid until a pid is removed.
    @inline(__always)
    func slot(_ pid: Int32) -> Int? { index[pid] }

    /// The value in a slot `slot` returned, changed in place.
    subscript(slot slot: Int) -> Value {
        @inline(__always) get { slots[slot]! }
        @inline(__always) _modify { yield &slots[slot]! }
    }

    @discardableResult
    private mutating func insert(_ pid: Int32, _ value: Value) -> Int {
        let i: Int
        if let f = free.popLast() {
            i = f
            slots[i] = value
        } else {
            i = slots.count
            slots.append(value)
        }
        index[pid] = i
        return i
    }

    /// Every value, in no particular order.
    var values: [Value] { slots.compactMap { $0 } }
}
