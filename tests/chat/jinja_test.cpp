// kiln's Jinja interpreter: every construct of the supported subset with its expected output,
// the same cases (and more, for whitespace rules) rendered by Jinja2 itself under Hugging Face's
// settings through tests/chat/chat_template_oracle.py, and the errors and limits.
#include "chat/jinja_interpreter.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_support.h"

namespace kiln::jinja {
namespace {

using nlohmann::ordered_json;

std::string render(const std::string& tpl, const std::string& vars_json = "{}", const RenderOptions& opts = {}) {
  return Template(tpl).render(Value::from_json(ordered_json::parse(vars_json)), opts);
}

// The error message of a template that must fail (to parse or to render).
std::string error_of(const std::string& tpl, const std::string& vars_json = "{}", const RenderOptions& opts = {}) {
  try {
    render(tpl, vars_json, opts);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

struct Case {
  const char* name;
  std::string tpl;
  std::string vars;
  std::string expected;
};

// Expected outputs follow Jinja2 3.1 with trim_blocks and lstrip_blocks (Hugging Face's
// settings); OracleAgreesWithExpectations checks them against Jinja2 itself.
const std::vector<Case>& language_cases() {
  static const std::vector<Case> cases = {
      {"arithmetic", "{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}", "{}",
       "7 3 -4 1 2 3.5 1024"},
      {"floats", "{{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 1e3 }} {{ 10 / 4 }} {{ 1e20 }} {{ 1.5e-7 }}", "{}",
       "2.5 0.30000000000000004 1000.0 2.5 1e+20 1.5e-07"},
      {"concat", "{{ 'a' ~ 1 ~ none ~ true ~ 2.0 }}", "{}", "a1NoneTrue2.0"},
      {"repetition", "{{ 'ab' * 3 }}{{ [1] * 2 }}{{ 2 * 'c' }}", "{}", "ababab[1, 1]cc"},
      {"reprs", "{{ [1, 'a', none, true, 1.0, {'k': 'v'}] }} {{ ['it\\'s'] }} {{ (1, 2) }} {{ (1,) }}", "{}",
       "[1, 'a', None, True, 1.0, {'k': 'v'}] [\"it's\"] (1, 2) (1,)"},
      {"comparisons", "{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 1 != 2 }} {{ 3 >= 3 }} {{ 2 > 3 }}",
       "{}", "True True True True True True False"},
      {"membership", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 3 in [] }}", "{}",
       "True True True True False"},
      {"and_or_values", "{{ 0 or 'x' }} {{ 1 and 'y' }} [{{ '' and 'z' }}] {{ not 0 }} {{ not 'a' }}", "{}",
       "x y [] True False"},
      {"inline_if", "{{ 'yes' if x else 'no' }} [{{ 'a' if y }}] {{ 'p' if false else 'q' if true else 'r' }}", R"({"x": 1})",
       "yes [] q"},
      {"attributes_and_items", "{{ d.a }} {{ d['b'][1] }} [{{ d.missing }}] {{ l[-1] }} [{{ l[5] }}] {{ d.b.0 }}",
       R"({"d": {"a": 1, "b": [1, 2]}, "l": [1, 2, 3]})", "1 2 [] 3 [] 1"},
      {"slices", "{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ 'hello'[1:3] }} {{ 'abc'[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ l[5:] }}",
       R"({"l": [1, 2, 3, 4]})", "[2, 3, 4] [1, 2, 3] [4, 3, 2, 1] el cba [1, 3] [3, 4] []"},
      {"unicode_strings", "{{ 'héllo'[1] }}{{ 'héllo'|length }}{{ 'aé'[::-1] }}{{ 'añb'[1:] }}", "{}", "é5éañb"},
      {"string_escapes", "{{ 'a\\tb\\u00e9\\x41\\n' }}|{{ \"q\\\"q\" }}|{{ 'a' 'b' }}", "{}", "a\tbéA\n|q\"q|ab"},
      {"dict_methods",
       "{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('x', 'dflt') }}{{ d.get('x2') }}"
       "{{ d.keys()|list }}{{ d.values()|list }}{{ d.get('nope') }}",
       R"({"d": {"x2": 1}})", "b=1;a=2;dflt1['x2'][1]None"},
      {"string_methods",
       "{{ '  hi  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ ' a'.lstrip() }}|{{ 'a '.rstrip() }}|"
       "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|"
       "{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|{{ 'hello wORLD'.title() }}|{{ 'aXa'.replace('a', 'b') }}|"
       "{{ '{} and {name}'.format(1, name='n') }}|{{ ', '.join(['a', 'b']) }}|{{ 'abc'.find('c') }}{{ 'aaa'.count('a') }}",
       "{}", "hi|hi|a|a|TrueTrue|['a', 'b', '', 'c']|['a', 'b']|HIhi|Hello World|bXb|1 and n|a, b|23"},
      {"if_elif_else", "{% if x == 1 %}one{% elif x == 2 %}two{% else %}other{% endif %}", R"({"x": 2})", "two"},
      {"if_else", "{% if x %}t{% else %}f{% endif %}{% if u %}t{% else %}f{% endif %}", R"({"x": [0]})", "tf"},
      {"loop_variables",
       "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
       "{{ loop.revindex }}{{ loop.revindex0 }},{% endfor %}",
       R"({"xs": ["a", "b"]})", "10TrueFalse221,21FalseTrue210,"},
      {"loop_filter_and_else",
       "{% for x in xs if x > 1 %}{{ x }}{{ loop.index }}{{ loop.last }} {% else %}none{% endfor %}|"
       "{% for x in [] %}x{% else %}empty{% endfor %}",
       R"({"xs": [1, 2, 3]})", "21False 32True |empty"},
      {"loop_cycle_previtem", "{% for x in [1, 2, 3] %}{{ loop.cycle('a', 'b') }}{{ loop.previtem if not loop.first }}{% endfor %}",
       "{}", "ab1a2"},
      {"nested_loops", "{% for a in [1, 2] %}{% for b in [1, 2] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}", "{}",
       "121122"},
      {"loop_over_dict_and_string", "{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}{% for c in 'hé' %}[{{ c }}]{% endfor %}",
       "{}", "xy[h][é]"},
      {"loop_unpacking", "{% for a, b in [[1, 2], [3, 4]] %}{{ a }}{{ b }}{% endfor %}", "{}", "1234"},
      {"break_continue",
       "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
       "{}", "0134"},
      {"set_does_not_leak_from_loop", "{% for x in [1, 2] %}{% set y = x %}{% endfor %}[{{ y }}]", "{}", "[]"},
      {"namespace",
       "{% set ns = namespace(count=0, found=false) %}{% for x in [1, 2, 3] %}{% set ns.count = ns.count + x %}"
       "{% if x == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }}{{ ns.found }}",
       "{}", "6True"},
      {"set_tuple_and_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set s %}x{{ a }}y{% endset %}[{{ s }}]", "{}", "12[x1y]"},
      {"macro",
       "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
       "{{ greet('A') }} {{ greet('B', punct='?') }} {{ greet(name='C') }}",
       "{}", "Hi A! Hi B? Hi C!"},
      {"raw", "{% raw %}{{ not }}{% if %}{% endraw %}", "{}", "{{ not }}{% if %}"},
      {"comment", "a{# comment {{ x }} #}b", "{}", "ab"},
      {"whitespace_control", "a  {{- 'b' -}}  c|x\n  {%- if true %}y{% endif %}|{%- if true -%}  z  {%- endif -%}  |", "{}",
       "abc|xy|z|"},
      {"trim_blocks", "{% if true %}\nx\n{% endif %}\ny", "{}", "x\ny"},
      {"lstrip_blocks", "  {% if true %}\n  x\n  {% endif %}\nz", "{}", "  x\nz"},
      {"lstrip_only_at_line_start", "a {% if true %}x{% endif %}", "{}", "a x"},
      {"plus_disables_lstrip", "  {%+ if true %}x{% endif %}", "{}", "  x"},
      {"plus_disables_trim", "{% if true +%}\nx{% endif %}", "{}", "\nx"},
      {"trailing_newline_dropped", "a\n\n", "{}", "a\n"},
      {"tests",
       "{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ {} is mapping }}"
       "{{ [] is iterable }}{{ [] is sequence }}{{ true is true }}{{ false is false }}{{ 3 is odd }}{{ 4 is even }}"
       "{{ 1 is not string }}{{ 6 is divisibleby 3 }}{{ 'a' is equalto 'a' }}{{ 1 is integer }}{{ 1.5 is float }}",
       R"({"x": 1})", "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue"},
      {"not_binds_looser_than_is", "{{ not x is defined }}", "{}", "True"},
      {"filters_text",
       "{{ '  a '|trim }}|{{ 'abc'|length }}{{ [1, 2]|count }}{{ {'a': 1}|length }}|{{ 'ab'|upper }}{{ 'AB'|lower }}|"
       "{{ 'hello wORLD'|title }}|{{ 'hELLO'|capitalize }}|{{ x|default('dflt') }}{{ ''|d('e', true) }}{{ 0|default(5) }}",
       "{}", "a|321|ABab|Hello World|Hello|dflte0"},
      {"filters_values",
       "{{ [1, 2, 3]|first }}{{ [1, 2, 3]|last }}|{{ ['a', 'b']|join(', ') }}|{{ 'aaa'|replace('a', 'b', 2) }}|"
       "{{ 'ab'|list }}|{{ {'k': 1}|items|list }}|{{ 12|string ~ 'x' }}|{{ '42'|int + 1 }}{{ '3.9'|int }}{{ 'x'|int }}"
       "{{ '2.5'|float }}|{{ -3|abs }}|{{ 2.567|round(2) }}{{ 2.5|round }}{{ 3|round }}|{{ 'abc'|reverse }}",
       "{}", "13|a, b|bba|['a', 'b']|[('k', 1)]|12x|43302.5|3|2.572.03|cba"},
      {"filters_collections",
       "{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='n')|list }}|"
       "{{ ms|rejectattr('role', 'equalto', 'user')|list|length }}|{{ [1, 2, 3, 4]|select('odd')|list }}"
       "{{ [1, 2, 3, 4]|reject('odd')|list }}|{{ ['b', 'A', 'a', 'B']|unique|list }}|{{ ['b', 'A', 'c']|sort }}"
       "{{ [3, 1, 2]|sort(reverse=true) }}|{{ ms|sort(attribute='n')|map(attribute='n')|join }}|"
       "{{ {'b': 1, 'a': 2}|dictsort }}|{{ [1, 2, 3]|sum }}{{ [1, 5, 2]|max }}{{ [4, 1, 9]|min }}|"
       "{{ ['a', 'b']|map('upper')|join }}|{{ ms|selectattr('missing', 'undefined')|list|length }}|{{ [0, 1, '', 2]|select|list }}",
       R"({"ms": [{"role": "user", "n": 2}, {"role": "assistant", "n": 1}, {"role": "user", "n": 3}]})",
       "[2, 3]|1|[1, 3][2, 4]|['b', 'A']|['A', 'b', 'c'][3, 2, 1]|123|[('a', 2), ('b', 1)]|651|AB|3|[1, 2]"},
      {"tojson", "{{ {'a': [1, 2.5, none, true, 'é\"\\n']}|tojson }}|{{ {'a': {'b': []}, 'c': {}}|tojson(indent=2) }}", "{}",
       "{\"a\": [1, 2.5, null, true, \"é\\\"\\n\"]}|{\n  \"a\": {\n    \"b\": []\n  },\n  \"c\": {}\n}"},
      {"tojson_keeps_key_order", "{{ d|tojson }}", R"({"d": {"z": 1, "a": {"y": [1.0, "x"], "b": null}}})",
       "{\"z\": 1, \"a\": {\"y\": [1.0, \"x\"], \"b\": null}}"},
      {"indent", "{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}", "{}", "a\n  b\n\n  c|  a\n  b"},
      {"range", "{{ range(3)|list }}{{ range(1, 7, 2)|list }}{{ range(3, 0, -1)|list }}", "{}", "[0, 1, 2][1, 3, 5][3, 2, 1]"},
      {"filter_block", "{% filter upper %}ab{{ 'c' }}{% endfilter %}", "{}", "ABC"},
      {"undefined_is_harmless_when_printed_or_tested",
       "[{{ u }}]{{ u|length }}{{ u is defined }}{% for x in u %}x{% endfor %}{{ u|default('d') }}[{{ u|trim }}]", "{}",
       "[]0Falsed[]"},
      {"filter_binds_tighter_than_plus", "{{ 'a' + ' b '|trim + 'c' }}", "{}", "abc"},
      {"unary_minus_then_power", "{{ -2 ** 2 }}", "{}", "4"},
      {"messages_slice", "{% set m = ms[1:] %}{{ m|length }}{{ m[0].role }}",
       R"({"ms": [{"role": "system"}, {"role": "user"}]})", "1user"},
  };
  return cases;
}

TEST(JinjaLanguage, EveryConstructRendersAsJinja2Does) {
  for (const Case& c : language_cases()) {
    SCOPED_TRACE(c.name);
    try {
      EXPECT_EQ(render(c.tpl, c.vars), c.expected);
    } catch (const Error& e) {
      ADD_FAILURE() << "threw: " << e.what();
    }
  }
}

TEST(JinjaLanguage, GenerationTagRendersItsBody) {
  // Hugging Face's {% generation %} marks assistant text for training masks; it renders as is.
  EXPECT_EQ(render("a{% generation %}b{{ 1 }}{% endgeneration %}c"), "ab1c");
}

TEST(JinjaLanguage, StrftimeNowUsesTheGivenClock) {
  RenderOptions opts;
  opts.now = 86400 * 400;  // 1971-02-05 UTC
  std::tm tm{};
  const std::time_t t = static_cast<std::time_t>(*opts.now);
  localtime_r(&t, &tm);
  char expected[32];
  std::strftime(expected, sizeof expected, "%d %b %Y", &tm);
  EXPECT_EQ(render("{{ strftime_now('%d %b %Y') }}", "{}", opts), expected);
}

TEST(JinjaLanguage, ValuesFromJsonKeepTypes) {
  EXPECT_EQ(render("{{ a }} {{ b }} {{ c }} {{ d }} {{ e is none }} {{ f }}",
                   R"({"a": 1, "b": 2.0, "c": true, "d": "s", "e": null, "f": 18446744073709551615})"),
            "1 2.0 True s True 1.8446744073709552e+19");
}

// ---- errors ---------------------------------------------------------------------------------

struct ErrorCase {
  std::string tpl;
  std::string vars;
  std::string expected;  // a substring of the message
};

TEST(JinjaErrors, NameTheProblemWithLineAndColumn) {
  const std::vector<ErrorCase> cases = {
      {"{% if x %}", "{}", "chat template: line 1:11: unexpected end of template, expected 'endif'"},
      {"{% for x in y %}", "{}", "expected 'endfor'"},
      {"{{ x | nofilter }}", "{}", "chat template: line 1:8: no filter named 'nofilter'"},
      {"{{ x is nottest }}", "{}", "no test named 'nottest'"},
      {"{{ raise_exception('bad thing') }}", "{}", "raise_exception: bad thing"},
      {"{{ undefined_fn() }}", "{}", "'undefined_fn' is undefined and cannot be called"},
      {"{{ 1 + 'a' }}", "{}", "unsupported operand type(s) for +: 'int' and 'str'"},
      {"{{ u.x }}", "{}", "'u' is undefined"},
      {"{{ u + 1 }}", "{}", "'u' is undefined"},
      {"{% endif %}", "{}", "unexpected 'endif'"},
      {"{% foo %}", "{}", "unknown or unsupported tag 'foo'"},
      {"{% include 'x' %}", "{}", "unknown or unsupported tag 'include'"},
      {"{{ 'abc }}", "{}", "unterminated string"},
      {"{{ 1 / 0 }}", "{}", "division by zero"},
      {"{% for x in 1 %}{% endfor %}", "{}", "'int' object is not iterable"},
      {"{% break %}", "{}", "'break' outside of a loop"},
      {"{% set d.y = 1 %}", R"({"d": {}})", "only namespace() objects can be changed"},
      {"a\nb\n  {{ 1 +* }}", "{}", "chat template: line 3:9: unexpected '*' in expression"},
      {"{{ x }", "{}", "expected '}}'"},
      {"{# never closed", "{}", "unterminated comment"},
      {"{% raw %}never closed", "{}", "unterminated raw block"},
      {"{{ 99999999999999999999 }}", "{}", "out of range"},
      {"{{ 9223372036854775807 + 1 }}", "{}", "integer overflow"},
      {"{% for a, b in [[1, 2, 3]] %}{% endfor %}", "{}", "too many values to unpack"},
      {"{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "{}", "takes not more than 1 argument"},
      {"{{ [1, 2][1:2:0] }}", "{}", "slice step cannot be zero"},
      {"{{ 'a'|join(1, 2, 3) }}", "{}", "takes at most"},
      {"{{ x|tojson }}", "{}", "not JSON serializable"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.tpl);
    const std::string msg = error_of(c.tpl, c.vars);
    EXPECT_NE(msg.find(c.expected), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
  }
}

TEST(JinjaErrors, RaisedMessagesStayOnOneLine) {
  const std::string msg = error_of("{{ raise_exception('two\\nlines') }}");
  EXPECT_NE(msg.find("raise_exception: two\\nlines"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

TEST(JinjaLimits, RunawayTemplatesFailCleanly) {
  RenderOptions small;
  small.limits.max_output_bytes = 1000;
  small.limits.max_steps = 200000;
  small.limits.max_list_items = 100000;
  EXPECT_NE(error_of("{% for i in range(1000) %}xxxxxxxxxx{% endfor %}", "{}", small).find("exceeds the limit of 1000 bytes"),
            std::string::npos);
  EXPECT_NE(error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "{}", small)
                .find("exceeded its budget"),
            std::string::npos);
  EXPECT_NE(error_of("{{ range(10000000000)|length }}", "{}", small).find("exceeds the render limit"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a' * 100000000000 }}", "{}", small).find("exceeds the limit"), std::string::npos);
  EXPECT_NE(error_of("{{ [1, 2] * 100000000000 }}", "{}", small).find("exceeds the limit"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "{}",
                     small)
                .find("exceeds the render limit"),
            std::string::npos);
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("recursion deeper than"),
            std::string::npos);
  EXPECT_NE(error_of("{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}").find("nested deeper than"),
            std::string::npos);
  std::string chain = "{{ x";
  for (int i = 0; i < 1000; ++i) chain += ".a";
  EXPECT_NE(error_of(chain + " }}").find("nested deeper than"), std::string::npos);
  std::string sum = "{{ 1";
  for (int i = 0; i < 1000; ++i) sum += " + 1";
  EXPECT_NE(error_of(sum + " }}").find("nested deeper than"), std::string::npos);
}

TEST(JinjaLimits, SelfReferencingNamespaceIsFreedAndBounded) {
  // The namespace holds itself; the render must still end (and ASan builds check it is freed).
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me is defined }}"), "True");
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").find("nested deeper than"),
            std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns|tojson }}").find("nested deeper than"),
            std::string::npos);
}

// ---- Jinja2 itself as the oracle --------------------------------------------------------------

struct OracleResult {
  bool ok = false;
  std::string text;  // the output, or "<ExceptionType>: message"
};

// Renders each case with Jinja2 (Hugging Face's settings); nullopt when python3-jinja2 is absent.
std::optional<std::vector<OracleResult>> run_oracle(const ordered_json& cases) {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  const std::string script = std::string(src ? src : ".") + "/tests/chat/chat_template_oracle.py";
  if (!std::ifstream(script).good()) return std::nullopt;  // not run from the source tree (KILN_SOURCE_DIR)
  const std::string dir = test::temp_dir();
  const std::string in = dir + "/jinja_oracle_in.json";
  const std::string out = dir + "/jinja_oracle_out.json";
  std::ofstream(in) << cases.dump();
  std::string ignored;
  const int rc = test::run_command("/usr/bin/python3 " + script + " < " + in + " > " + out, &ignored, true);
  if (rc == 3 || rc == 127) return std::nullopt;
  if (rc != 0) {
    ADD_FAILURE() << "the Jinja2 oracle failed with exit code " << rc;
    return std::nullopt;
  }
  std::ifstream f(out);
  const ordered_json results = ordered_json::parse(f);
  std::vector<OracleResult> r;
  for (const auto& j : results) {
    OracleResult o;
    o.ok = j.contains("output");
    o.text = o.ok ? j["output"].get<std::string>() : j["error"].get<std::string>();
    r.push_back(std::move(o));
  }
  return r;
}

TEST(JinjaOracle, AgreesWithExpectations) {
  ordered_json cases = ordered_json::array();
  for (const Case& c : language_cases())
    cases.push_back({{"template", c.tpl}, {"variables", ordered_json::parse(c.vars)}});
  const auto results = run_oracle(cases);
  if (!results) GTEST_SKIP() << "python3-jinja2 is not installed: the expectations were not checked against Jinja2";
  ASSERT_EQ(results->size(), language_cases().size());
  for (std::size_t i = 0; i < results->size(); ++i) {
    SCOPED_TRACE(language_cases()[i].name);
    EXPECT_TRUE((*results)[i].ok) << (*results)[i].text;
    EXPECT_EQ((*results)[i].text, language_cases()[i].expected);
  }
}

// Whitespace rules, scoping and formatting corners: kiln must match Jinja2 byte for byte, and
// fail exactly where Jinja2 fails.
TEST(JinjaOracle, CornerCasesMatchJinja2) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"<ul>\n  {% for x in [1, 2] %}\n    <li>{{ x }}</li>\n  {% endfor %}\n</ul>\n", "{}"},
      {"  {# c #}\nx\n  {#- d -#}  \ny", "{}"},
      {"a {%- if true -%} b {%- endif -%} c", "{}"},
      {"{%- if true %}\n\n  x\n{% endif -%}\n\ny", "{}"},
      {"a\n{{- 'b' }}\n{{ 'c' -}}\n\nd", "{}"},
      {"\t {% if true %}x{% endif %}\n \t{% if true %}\ny{% endif %}", "{}"},
      {"line1\n   {%- raw %}  {{x}} {% endraw -%}  \nz", "{}"},
      {"{% raw %}\n a {% endraw %}\nq\n  {% raw -%}  b  {%- endraw %}", "{}"},
      {"a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", "{}"},
      {"{% for m in ms %}\n  {%- if m %}\n    [{{ m }}]\n  {%- endif %}\n{% endfor %}", R"({"ms": [1, 0, 2]})"},
      {"{{ x }}\n{% if x %}\n  {{ x }}\n{% endif %}\n", R"({"x": 3})"},
      {"{% set a = 1 %}{% for x in [1, 2] %}{% set a = a + x %}{{ a }}{% endfor %}{{ a }}", "{}"},
      {"{% macro m() %}{{ v }}{% endmacro %}{% set v = 'top' %}{{ m() }}", "{}"},
      {"{{ 2 ** -1 }} {{ 10 // 3 * 3 }} {{ 3.0 // 2 }} {{ -3.5 % 2 }} {{ 1e300 * 1e10 }} {{ -7 % -3 }}", "{}"},
      {"{{ 'x' ~ 1 + 2 }}", "{}"},
      {"{{ 1 if 0 }}|{{ none }}|{{ [none] }}|{{ () }}|{{ {} }}", "{}"},
      {"{{ 'Hello World'.split(' ', 1) }} {{ 'a b c'.split(none, 1) }} {{ ' x '|trim('x ') }}", "{}"},
      {"{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ true is number }}{{ none is iterable }}{{ 'a' is sequence }}", "{}"},
      {"{{ {'k': [1, {'z': 'q'}]}|tojson(indent=4) }}|{{ 'ü'|tojson }}|{{ 1.0|tojson }}|{{ 0.1|tojson }}|{{ [1e100, -0.0]|tojson }}", "{}"},
      {"{{ d|tojson(sort_keys=true) }}", R"({"d": {"b": 1, "a": [true, null]}})"},
      {"{{ d['missing'] is defined }}{{ d.k.x is defined }}{{ d['k']['x'] }}", R"({"d": {"k": {"x": 5}}})"},
      {"{% if x is not none and x|length > 0 %}y{% endif %}", R"({"x": "a"})"},
      {"{{ [1, 2] + (3,) }}", "{}"},
      {"{{ 'abc'[1] }}{{ 'abc'[-1] }}{{ [1, 2, 3][1:2][0] }}{{ (1, 2, 3)[1:] }}", "{}"},
      {"{{ ns.x }}{% set ns = namespace(x=1) %}{{ ns.x }}", "{}"},
      {"{% set ns = namespace(items=[]) %}{% for i in [1, 2] %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.items }}", "{}"},
      {"{{ 'a-b c(d'|title }} {{ 'ab cd'.title() }} {{ 'aBC'|capitalize }}", "{}"},
      {"{{ '%s' }} {{ '%' }}", "{}"},
      {"{{ 123456789012345678.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }}", "{}"},
      {"{{ [3, 1, 2]|sort|first }} {{ {'b': 1, 'a': 2}|dictsort(by='value') }} {{ ['b', 'a']|max }}", "{}"},
      {"{% for x in 'ab' %}{{ loop.revindex }}{% else %}n{% endfor %}{% for x in none %}{% endfor %}", "{}"},
      {"{{ x|int(7) }} {{ '  12 '|int }} {{ '1_000'|int }} {{ true|int }} {{ '1e3'|float }}", R"({"x": "q"})"},
      {"{{ 'a' < 'B' }} {{ [1, 2] < [1, 3] }} {{ 'b' > 'a' }}", "{}"},
      {"{{ 'a' < 1 }}", "{}"},
      {"{{ messages[0].content|trim }}{{ messages|length }}", R"({"messages": [{"content": " hi "}]})"},
      {"{% set x = [1, 2] %}{{ x|join(',') }}{{ x|join }}", "{}"},
      {"{{ {'a': 1}.items()|list }} {{ {'a': 1}|items|list }}", "{}"},
      {"{{ 'abc'|first }}{{ 'abc'|last }}{{ [1, 2]|last }}", "{}"},
      {"{% for a in [1] %}{% for b in [2] %}{{ loop.length }}{% endfor %}{{ loop.first }}{% endfor %}", "{}"},
  };
  ordered_json request = ordered_json::array();
  for (const auto& [tpl, vars] : cases) request.push_back({{"template", tpl}, {"variables", ordered_json::parse(vars)}});
  const auto results = run_oracle(request);
  if (!results) GTEST_SKIP() << "python3-jinja2 is not installed: kiln was not compared with Jinja2";
  ASSERT_EQ(results->size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].first);
    const OracleResult& o = (*results)[i];
    std::string ours;
    bool ok = true;
    try {
      ours = render(cases[i].first, cases[i].second);
    } catch (const Error& e) {
      ok = false;
      ours = e.what();
    }
    EXPECT_EQ(ok, o.ok) << "kiln: " << ours << "\njinja2: " << o.text;
    if (ok && o.ok) {
      EXPECT_EQ(ours, o.text);
    }
  }
}

}  // namespace
}  // namespace kiln::jinja
