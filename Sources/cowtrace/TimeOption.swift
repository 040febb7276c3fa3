import ArgumentParser

/// The one syntax and check of every interval, duration and timeout on the
/// command line: `500ms`, `30s`, `2m`, `1h`, or a bare number (seconds; in
/// milliseconds for the options that always took milliseconds, whose help says
/// so). Double reads "nan", "inf" and "1e9"; a NaN interval never elapses, and
/// a huge one overflows the nanosecond arithmetic of the sampling loops, so
/// both are refused up front.
enum TimeOption {
    /// A day. Nothing cowtrace does waits longer; past this a number is a typo.
    static let maxSeconds: Double = 86_400

    enum Unit: String {
        case seconds, milliseconds
        var perSecond: Double { self == .seconds ? 1 : 1000 }
    }

    /// "30s" → 30, "500ms" → 0.5, "2m" → 120, "1h" → 3600, "7" → 7 (or 0.007
    /// with `bare: .milliseconds`). Nil when it is not a number with one of
    /// those suffixes; the range is `check`'s business.
    static func seconds(_ text: String, bare: Unit = .seconds) -> Double? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        let suffix = units.first { text.hasSuffix($0.0) }
        let number = suffix.map { text.dropLast($0.0.count) } ?? Substring(text)
        guard let value = Double(number) else { return nil }
        return value * (suffix?.1 ?? 1 / bare.perSecond)
    }

    static func accepts(_ seconds: Double, zero: Bool = false) -> Bool {
        seconds.isFinite && seconds <= maxSeconds && (seconds > 0 || (zero && seconds == 0))
    }

    /// Throws "NAME VALUE: expected …" unless `value` is a time more than zero
    /// (or exactly zero when `zeroMeans` says what zero does) and at most a day.
    static func check<B>(_ value: TimeValue<B>?, _ name: String, zeroMeans: String? = nil) throws {
        guard let value else { return }
        if let s = value.seconds, accepts(s, zero: zeroMeans != nil) { return }
        throw ValidationError("\(name) \(value.text): \(expected(B.unit, zeroMeans: zeroMeans))")
    }

    /// "expected a positive time such as 500ms, 30s, 2m or 1h (a bare number is seconds), at most 24h".
    static func expected(_ bare: Unit, zeroMeans: String? = nil) -> String {
        "expected " + (zeroMeans.map { "0 (\($0)) or " } ?? "")
            + "a positive time such as 500ms, 30s, 2m or 1h (a bare number is \(bare.rawValue)), at most 24h"
    }
}

/// What a bare number means for an option: seconds, everywhere (issue 13).
protocol BareTimeUnit { static var unit: TimeOption.Unit { get } }
enum BareSeconds: BareTimeUnit { static let unit = TimeOption.Unit.seconds }

/// A time as typed on the command line. Any text parses, so that an unknown
/// option still wins (see OptionChecks); TimeOption.check refuses bad ones.
struct TimeValue<Bare: BareTimeUnit>: ExpressibleByArgument, ExpressibleByStringLiteral, CustomStringConvertible {
    let text: String
    init?(argument: String) { text = argument }
    init(stringLiteral value: String) { text = value }
    var description: String { text }
    var defaultValueDescription: String { text }

    /// Nil when the text is not a time.
    var seconds: Double? { TimeOption.seconds(text, bare: Bare.unit) }
    /// After TimeOption.check.
    var value: Double { seconds ?? .nan }
}

/// A time whose bare number is seconds: the usual kind.
typealias Seconds = TimeValue<BareSeconds>
