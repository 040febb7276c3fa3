import ArgumentParser

/// The one check every interval, duration and timeout on the command line
/// passes. ArgumentParser reads "nan", "inf" and "1e9" as valid Doubles; a NaN
/// interval never elapses, and a huge one overflows the nanosecond arithmetic
/// of the sampling loops, so both are refused up front.
enum TimeOption {
    /// A day. Nothing cowtrace does waits longer; past this a number is a typo.
    static let maxSeconds: Double = 86_400

    enum Unit: String {
        case seconds, milliseconds
        var perSecond: Double { self == .seconds ? 1 : 1000 }
    }

    /// Throws "NAME VALUE: expected …" unless `value` (in `unit`) is finite,
    /// more than zero (or exactly zero when `zeroMeans` says what zero does)
    /// and at most a day.
    static func check(_ value: Double, _ name: String, unit: Unit = .seconds, zeroMeans: String? = nil) throws {
        if accepts(value / unit.perSecond, zero: zeroMeans != nil) { return }
        throw ValidationError("\(name) \(text(value)): \(expected(unit, zeroMeans: zeroMeans))")
    }

    static func check(_ value: Double?, _ name: String, unit: Unit = .seconds, zeroMeans: String? = nil) throws {
        if let value { try check(value, name, unit: unit, zeroMeans: zeroMeans) }
    }

    static func accepts(_ seconds: Double, zero: Bool = false) -> Bool {
        seconds.isFinite && seconds <= maxSeconds && (seconds > 0 || (zero && seconds == 0))
    }

    /// "expected a positive number of seconds, at most 86400 (one day)".
    static func expected(_ unit: Unit, zeroMeans: String? = nil) -> String {
        let most = text(maxSeconds * unit.perSecond)
        return "expected " + (zeroMeans.map { "0 (\($0)) or " } ?? "")
            + "a positive number of \(unit.rawValue), at most \(most) (one day)"
    }

    private static func text(_ v: Double) -> String {
        v.isFinite && v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : "\(v)"
    }
}
