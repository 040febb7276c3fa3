/// A value per pid (or tid), as a dictionary would hold them, but found
/// through a `PidIndex` (a flat array for real ids): the replay looks up a
/// process row and a pid's state, and the kernel-class fold a thread's open
/// fault, once or twice per fault, where hashing an Int32 key costs more than
/// the rest of the lookup. Values live in a dense array in the order their ids
/// were added; a removed id's slot is handed out again.
public struct PidTable<Value> {
    @usableFromInline var index = PidIndex()
    @usableFromInline var slots: [Value?] = []
    @usableFromInline var free: [Int] = []
    @usableFromInline var valueCount = 0

    public init() {}

    /// How many ids have a value.
    @inlinable public var count: Int { valueCount }

    /// `pid`'s value, nil when it has none; setting nil removes it.
    public subscript(pid: Int32) -> Value? {
        @inlinable @inline(__always) get {
            guard let i = index[pid] else { return nil }
            return slots[i]
        }
        @inlinable set {
            if let i = index[pid] {
                if let newValue { slots[i] = newValue } else { remove(pid, slot: i) }
            } else if let newValue {
                insert(pid, newValue)
            }
        }
    }

    /// `pid`'s value, made `defaultValue` first when it has none; changed in place.
    public subscript(pid: Int32, default defaultValue: @autoclosure () -> Value) -> Value {
        @inlinable get { self[pid] ?? defaultValue() }
        @inlinable _modify {
            let i = index[pid] ?? insert(pid, defaultValue())
            yield &slots[i]!
        }
    }

    /// The slot of `pid`'s value, nil when it has none: valid until it is removed.
    @inlinable @inline(__always)
    public func slot(_ pid: Int32) -> Int? { index[pid] }

    /// The value in a slot `slot` returned (and not removed since), changed in place.
    public subscript(slot slot: Int) -> Value {
        @inlinable @inline(__always) get { slots[slot]! }
        @inlinable @inline(__always) _modify { yield &slots[slot]! }
    }

    /// Gives `pid` (which has none) a value; returns its slot.
    @inlinable @discardableResult
    public mutating func insert(_ pid: Int32, _ value: Value) -> Int {
        let i: Int
        if let f = free.popLast() {
            i = f
            slots[i] = value
        } else {
            i = slots.count
            slots.append(value)
        }
        index[pid] = i
        valueCount += 1
        return i
    }

    /// Removes `pid`'s value, in `slot`.
    @inlinable
    public mutating func remove(_ pid: Int32, slot i: Int) {
        index[pid] = nil
        slots[i] = nil
        free.append(i)
        valueCount -= 1
    }

    /// Every value, in the order of their slots.
    public var values: [Value] { slots.compactMap { $0 } }
}

extension PidTable: Sendable where Value: Sendable {}
