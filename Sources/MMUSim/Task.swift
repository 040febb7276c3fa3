/// One simulated process (`struct task_struct` with its signal struct).
final class Task {
    let pid: Int32
    var comm: String
    let uid: UInt32
    var oomScoreAdj: Int
    let capSysAdmin: Bool
    var mm: MM?
    /// memcg and alive are read on every page allocation.
    struct State { var memcg: Int; var alive: Bool }
    let state: UnsafeMutablePointer<State>
    var memcg: Int { get { state.pointee.memcg } set { state.pointee.memcg = newValue } }
    var alive: Bool { get { state.pointee.alive } set { state.pointee.alive = newValue } }
    var killedByOOM = false
    let parent: Int32?
    /// Faults handled, by class (`FaultClass.index`), behind a pointer: a
    /// replayed fault counts itself with one add, where an array stored in
    /// the task paid a uniqueness check and two bounds checks.
    let faultsByClass: UnsafeMutablePointer<Int>
    var faults: FaultCounts {
        var counts = FaultCounts()
        counts.add(faultsByClass)
        return counts
    }

    init(pid: Int32, comm: String, uid: UInt32, oomScoreAdj: Int, memcg: Int, capSysAdmin: Bool, parent: Int32?, mm: MM) {
        self.pid = pid
        self.comm = String(comm.prefix(15)) // TASK_COMM_LEN - 1
        self.uid = uid
        self.oomScoreAdj = oomScoreAdj
        state = .allocate(capacity: 1)
        state.initialize(to: State(memcg: memcg, alive: true))
        faultsByClass = .allocate(capacity: FaultClass.count)
        faultsByClass.initialize(repeating: 0, count: FaultClass.count)
        self.capSysAdmin = capSysAdmin
        self.parent = parent
        self.mm = mm
    }

    deinit {
        state.deallocate()
        faultsByClass.deallocate()
    }

    /// Adds counts by class (as `faultsByClass`) to the task's.
    func addFaults(_ counts: FaultCounts) {
        for (i, n) in counts.counts.enumerated() { faultsByClass[i] += n }
    }

    /// Adds counts by class to the task's and zeroes them. Touches only the
    /// classes counted (one, for most calls): the task's counts are rarely in the cache.
    func takeFaults(_ raw: UnsafeMutablePointer<Int>) {
        for i in 0..<FaultClass.count where raw[i] != 0 {
            faultsByClass[i] += raw[i]
            raw[i] = 0
        }
    }
}
