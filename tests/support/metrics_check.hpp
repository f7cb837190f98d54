// tests/support/metrics_check.hpp — strict readers for what offload::metrics
// renders, for tests: a checker of Prometheus text exposition format 0.0.4
// (grammar, names, one HELP/TYPE per family before its samples, escapes)
// that returns the samples, and a minimal JSON parser that rejects invalid JSON.
#pragma once

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace offload::test {

/// One sample line of Prometheus text: name, labels (unescaped), value text.
struct prom_sample {
    std::string name;
    std::map<std::string, std::string> labels;
    std::string value;
    double number() const { return value == "NaN" ? 0.0 / 0.0 : std::strtod(value.c_str(), nullptr); }
};

/// What check_prometheus read: the samples, and each family's TYPE.
struct prom_text {
    std::vector<prom_sample> samples;
    std::map<std::string, std::string> types;

    /// The samples named `name` whose labels include `want`.
    std::vector<prom_sample> find(const std::string& name, const std::map<std::string, std::string>& want = {}) const {
        std::vector<prom_sample> out;
        for (const auto& s : samples) {
            if (s.name != name) continue;
            bool ok = true;
            for (const auto& [k, v] : want) {
                auto it = s.labels.find(k);
                ok = ok && it != s.labels.end() && it->second == v;
            }
            if (ok) out.push_back(s);
        }
        return out;
    }
    /// The value of the one sample named `name` with labels `want` (fails the test otherwise).
    double value(const std::string& name, const std::map<std::string, std::string>& want) const {
        auto v = find(name, want);
        INFO("sample " << name);
        REQUIRE(v.size() == 1u);
        return v[0].number();
    }
};

namespace prom_detail {
inline bool metric_name(std::string_view n) {
    if (n.empty()) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        char c = n[i];
        bool a = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!a && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}
inline bool label_name(std::string_view n) {
    if (n.empty()) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        char c = n[i];
        bool a = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!a && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}
// A float as Go's ParseFloat reads it in the exposition format.
inline bool float_text(std::string_view v) {
    if (v == "NaN" || v == "+Inf" || v == "-Inf" || v == "Inf") return true;
    std::size_t i = 0;
    if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
    std::size_t digits = 0;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, ++digits;
    if (i < v.size() && v[i] == '.') {
        ++i;
        while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, ++digits;
    }
    if (digits == 0) return false;
    if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
        ++i;
        if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
        std::size_t e = 0;
        while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, ++e;
        if (e == 0) return false;
    }
    return i == v.size();
}
} // namespace prom_detail

/// Checks `text` line by line against the 0.0.4 text format, as strictly as
/// offload::metrics promises: only HELP and TYPE comments; each family has one
/// TYPE line (and at most one HELP), before its first sample; a family's
/// samples are contiguous; no series twice; counters end in `_total`; label
/// values use only the escapes \\, \" and \n. Returns what it read.
inline prom_text check_prometheus(const std::string& text) {
    using namespace prom_detail;
    prom_text out;
    if (!text.empty()) REQUIRE(text.back() == '\n');
    std::set<std::string> helped, closed, series;
    std::string current; // the family whose lines we are in
    auto enter = [&](const std::string& family) {
        if (family == current) return;
        INFO("family " << family << " appears again after another family");
        REQUIRE(closed.count(family) == 0);
        if (!current.empty()) closed.insert(current);
        current = family;
    };
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        const std::string line = text.substr(pos, eol - pos);
        pos = eol + 1;
        INFO("line: " << line);
        REQUIRE_FALSE(line.empty());
        if (line[0] == '#') {
            const bool help = line.rfind("# HELP ", 0) == 0, type = line.rfind("# TYPE ", 0) == 0;
            REQUIRE((help || type));
            std::string rest = line.substr(7);
            std::size_t sp = rest.find(' ');
            REQUIRE(sp != std::string::npos);
            std::string name = rest.substr(0, sp), arg = rest.substr(sp + 1);
            REQUIRE(metric_name(name));
            enter(name);
            if (help) {
                REQUIRE(helped.insert(name).second);
                REQUIRE(out.types.count(name) == 0); // we write HELP first
                for (std::size_t i = 0; i < arg.size(); ++i)
                    if (arg[i] == '\\') {
                        REQUIRE(i + 1 < arg.size());
                        REQUIRE((arg[i + 1] == '\\' || arg[i + 1] == 'n'));
                        ++i;
                    }
            } else {
                REQUIRE(
                    (arg == "counter" || arg == "gauge" || arg == "summary" || arg == "histogram" || arg == "untyped"));
                REQUIRE(out.types.emplace(name, arg).second); // one TYPE line per family
            }
            continue;
        }
        // name [{labels}] value [timestamp]
        prom_sample s;
        std::size_t i = 0;
        while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
        s.name = line.substr(0, i);
        REQUIRE(metric_name(s.name));
        std::string labels_key;
        if (i < line.size() && line[i] == '{') {
            ++i;
            while (true) {
                REQUIRE(i < line.size());
                if (line[i] == '}') {
                    ++i;
                    break;
                }
                std::size_t eq = line.find('=', i);
                REQUIRE(eq != std::string::npos);
                std::string lname = line.substr(i, eq - i);
                REQUIRE(label_name(lname));
                i = eq + 1;
                REQUIRE(i < line.size());
                REQUIRE(line[i] == '"');
                ++i;
                std::string value;
                while (true) {
                    REQUIRE(i < line.size());
                    char c = line[i++];
                    if (c == '"') break;
                    if (c == '\\') {
                        REQUIRE(i < line.size());
                        char e = line[i++];
                        REQUIRE((e == '\\' || e == '"' || e == 'n'));
                        value += e == 'n' ? '\n' : e;
                    } else {
                        value += c;
                    }
                }
                REQUIRE(s.labels.emplace(lname, value).second); // no label twice
                labels_key += lname + "=" + value + "\x1f";
                REQUIRE(i < line.size());
                if (line[i] == ',')
                    ++i;
                else
                    REQUIRE(line[i] == '}');
            }
        }
        REQUIRE(i < line.size());
        REQUIRE(line[i] == ' ');
        std::string rest = line.substr(i + 1);
        std::size_t sp = rest.find(' ');
        s.value = rest.substr(0, sp);
        REQUIRE(float_text(s.value));
        if (sp != std::string::npos) { // a timestamp: an integer of milliseconds
            std::string ts = rest.substr(sp + 1);
            REQUIRE_FALSE(ts.empty());
            for (std::size_t k = (ts[0] == '-' ? 1 : 0); k < ts.size(); ++k) REQUIRE((ts[k] >= '0' && ts[k] <= '9'));
        }
        // The sample's family: its own name, or the summary/histogram it belongs to.
        std::string family = s.name;
        for (const char* suffix : {"_sum", "_count", "_bucket"}) {
            std::string_view n = s.name, sx = suffix;
            if (n.size() > sx.size() && n.substr(n.size() - sx.size()) == sx) {
                std::string base(n.substr(0, n.size() - sx.size()));
                auto t = out.types.find(base);
                if (t != out.types.end() && (t->second == "summary" || t->second == "histogram")) family = base;
            }
        }
        REQUIRE(family == current);          // its TYPE (and HELP) came first, in this family's block
        REQUIRE(out.types.count(family) == 1u);
        if (out.types[family] == "counter") REQUIRE(s.name.size() > 6);
        if (out.types[family] == "counter") REQUIRE(s.name.substr(s.name.size() - 6) == "_total");
        REQUIRE(series.insert(s.name + "\x1e" + labels_key).second); // no series twice
        out.samples.push_back(std::move(s));
    }
    return out;
}

/// A parsed JSON value (a minimal DOM for tests). Numbers keep their text,
/// so 64-bit integers compare exactly.
struct json_value {
    enum kind_t { null, boolean, number, string, array, object } kind = null;
    bool b = false;
    std::string text; // number text, or the unescaped string
    std::vector<json_value> items;
    std::vector<std::string> keys;   // an object's keys, in order
    std::vector<json_value>
        members; // and their values (two vectors: a vector of an incomplete type is fine, a pair is not)

    /// The member `key` of an object (fails the test if absent).
    const json_value& operator[](const std::string& key) const {
        INFO("JSON key " << key);
        REQUIRE(kind == object);
        for (std::size_t i = 0; i < keys.size(); ++i)
            if (keys[i] == key) return members[i];
        FAIL("no such key");
        return *this;
    }
    bool has(const std::string& key) const {
        for (const auto& k : keys)
            if (k == key) return true;
        return false;
    }
    unsigned long long u64() const {
        REQUIRE(kind == number);
        return std::strtoull(text.c_str(), nullptr, 10);
    }
    double num() const {
        REQUIRE(kind == number);
        return std::strtod(text.c_str(), nullptr);
    }
};

/// Parses `text` as one JSON value (RFC 8259); fails the test on any error,
/// including a duplicate key in an object.
class json_parser {
public:
    static json_value parse(std::string_view text) {
        json_parser p(text);
        json_value v = p.value(0);
        p.ws();
        INFO("trailing text at " << p.i_);
        REQUIRE(p.i_ == text.size());
        return v;
    }

private:
    explicit json_parser(std::string_view t) : t_(t) {}
    void ws() {
        while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r')) ++i_;
    }
    char peek() {
        INFO("unexpected end of JSON");
        REQUIRE(i_ < t_.size());
        return t_[i_];
    }
    void expect(std::string_view word) {
        INFO("expected " << word << " at " << i_);
        REQUIRE(t_.substr(i_, word.size()) == word);
        i_ += word.size();
    }
    json_value value(int depth) {
        REQUIRE(depth < 64);
        ws();
        json_value v;
        char c = peek();
        if (c == '{') {
            v.kind = json_value::object;
            ++i_;
            ws();
            if (peek() == '}') {
                ++i_;
                return v;
            }
            while (true) {
                ws();
                REQUIRE(peek() == '"');
                std::string key = string();
                for (const auto& k : v.keys) {
                    INFO("duplicate key " << key);
                    REQUIRE(k != key);
                }
                ws();
                expect(":");
                v.keys.push_back(std::move(key));
                v.members.push_back(value(depth + 1));
                ws();
                if (peek() == ',') {
                    ++i_;
                    continue;
                }
                expect("}");
                return v;
            }
        }
        if (c == '[') {
            v.kind = json_value::array;
            ++i_;
            ws();
            if (peek() == ']') {
                ++i_;
                return v;
            }
            while (true) {
                v.items.push_back(value(depth + 1));
                ws();
                if (peek() == ',') {
                    ++i_;
                    continue;
                }
                expect("]");
                return v;
            }
        }
        if (c == '"') {
            v.kind = json_value::string;
            v.text = string();
            return v;
        }
        if (c == 't') {
            expect("true");
            v.kind = json_value::boolean;
            v.b = true;
            return v;
        }
        if (c == 'f') {
            expect("false");
            v.kind = json_value::boolean;
            return v;
        }
        if (c == 'n') {
            expect("null");
            return v;
        }
        v.kind = json_value::number;
        v.text = number();
        return v;
    }
    std::string number() {
        std::size_t start = i_;
        auto digit = [&] { return i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9'; };
        if (i_ < t_.size() && t_[i_] == '-') ++i_;
        INFO("bad number at " << start);
        REQUIRE(digit());
        if (t_[i_] == '0') {
            ++i_;
            REQUIRE_FALSE(digit()); // no leading zeros
        } else {
            while (digit()) ++i_;
        }
        if (i_ < t_.size() && t_[i_] == '.') {
            ++i_;
            REQUIRE(digit());
            while (digit()) ++i_;
        }
        if (i_ < t_.size() && (t_[i_] == 'e' || t_[i_] == 'E')) {
            ++i_;
            if (i_ < t_.size() && (t_[i_] == '+' || t_[i_] == '-')) ++i_;
            REQUIRE(digit());
            while (digit()) ++i_;
        }
        return std::string(t_.substr(start, i_ - start));
    }
    std::string string() {
        expect("\"");
        std::string out;
        while (true) {
            char c = peek();
            ++i_;
            if (c == '"') return out;
            INFO("raw control character in a JSON string at " << i_);
            REQUIRE(static_cast<unsigned char>(c) >= 0x20);
            if (c != '\\') {
                out += c;
                continue;
            }
            char e = peek();
            ++i_;
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                REQUIRE(i_ + 4 <= t_.size());
                unsigned cp = 0;
                for (int k = 0; k < 4; ++k) {
                    char h = t_[i_++];
                    cp *= 16;
                    if (h >= '0' && h <= '9')
                        cp += static_cast<unsigned>(h - '0');
                    else if (h >= 'a' && h <= 'f')
                        cp += static_cast<unsigned>(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F')
                        cp += static_cast<unsigned>(h - 'A' + 10);
                    else
                        FAIL("bad \\u escape");
                }
                REQUIRE(cp < 0x80); // all the tests need; enough to read control characters back
                out += static_cast<char>(cp);
                break;
            }
            default: FAIL("bad escape in a JSON string");
            }
        }
    }

    std::string_view t_;
    std::size_t i_ = 0;
};

} // namespace offload::test
