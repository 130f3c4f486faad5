// Parses PromQL, LogQL and TraceQL queries with the lezer grammars that the
// Prometheus and Grafana query editors use, and reports for each query:
//   - errors: every error node, with its position and the text around it;
//   - for PromQL: the metric selectors and the label names their matchers use,
//     the functions applied to each metric, and the labels the result carries
//     (see outputLabels below);
//   - for LogQL: the stream-selector label names, and for metric queries the
//     labels the result carries.
//
// Input (stdin or the file named as the first argument), JSON:
//   {"queries": [{"lang": "promql" | "logql" | "traceql", "query": "..."}],
//    "catalogue": {"metric_name": ["label", ...]}}          (catalogue optional)
// The catalogue closes the label set of the metrics it names: a selector of a
// catalogued metric carries exactly those labels (plus its own matchers).
// Output (stdout), JSON: a list with one result per query, in input order.

import { readFileSync } from 'node:fs';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import { parser as logqlParser } from '@grafana/lezer-logql';
import { parser as traceqlParser } from '@grafana/lezer-traceql';

const PARSERS = { promql: promqlParser, logql: logqlParser, traceql: traceqlParser };

function children(node) {
  const out = [];
  for (let c = node.firstChild; c; c = c.nextSibling) out.push(c);
  return out;
}

function errorsOf(tree, query) {
  const errors = [];
  tree.iterate({
    enter(n) {
      if (n.type.isError) {
        errors.push({
          from: n.from,
          to: n.to,
          near: query.slice(Math.max(0, n.from - 20), Math.min(query.length, n.to + 20)),
        });
      }
    },
  });
  return errors;
}

function unquote(text) {
  try {
    return JSON.parse(text.startsWith("'") ? `"${text.slice(1, -1).replace(/"/g, '\\"')}"` : text);
  } catch {
    return text.slice(1, -1);
  }
}

// ---------------------------------------------------------------- PromQL

// A label set: the labels every result series is known to carry (known), and
// whether it may carry others (open) other than those known to be gone
// (removed). scalar marks scalar and string values.
const scalarSet = () => ({ scalar: true, known: new Set(), open: false, removed: new Set() });
const closedSet = (labels) => ({ scalar: false, known: new Set(labels), open: false, removed: new Set() });
const possible = (s, l) => s.known.has(l) || (s.open && !s.removed.has(l));

const DROPS_LE = new Set(['histogram_quantile']);
const ADDS_LABEL = new Set(['label_replace', 'label_join']);
const NO_LABELS = new Set(['vector', 'time', 'pi', 'scalar', 'minute', 'hour', 'month', 'year',
  'day_of_month', 'day_of_week', 'day_of_year', 'days_in_month']);
const KEEP_INPUT_AGGREGATIONS = new Set(['topk', 'bottomk', 'limitk', 'limit_ratio']);
const SCALAR_FUNCTIONS = new Set(['scalar', 'time', 'pi']);
const EXPRESSION_NODES = new Set(['AggregateExpr', 'BinaryExpr', 'FunctionCall', 'MatrixSelector',
  'NumberDurationLiteral', 'NumberLiteral', 'OffsetExpr', 'ParenExpr', 'StringLiteral', 'SubqueryExpr',
  'UnaryExpr', 'VectorSelector', 'StepInvariantExpr']);

function selectorInfo(node, query) {
  // node: VectorSelector
  let metric = null;
  const matchers = [];
  const equalities = [];
  for (const c of children(node)) {
    if (c.name === 'Identifier') metric = query.slice(c.from, c.to);
    if (c.name === 'LabelMatchers') {
      for (const m of children(c)) {
        const parts = children(m);
        const nameNode = parts.find((p) => p.name === 'LabelName' || p.name === 'QuotedLabelName');
        const op = parts.find((p) => p.name === 'MatchOp');
        const value = parts.find((p) => p.name === 'StringLiteral');
        if (m.name === 'QuotedMetricName' || (nameNode === undefined && value !== undefined && op === undefined)) {
          metric = unquote(query.slice(value.from, value.to));
          continue;
        }
        if (!nameNode) continue;
        let name = query.slice(nameNode.from, nameNode.to);
        if (nameNode.name === 'QuotedLabelName') name = unquote(name);
        if (name === '__name__' && op && query.slice(op.from, op.to) === '=' && value) {
          metric = unquote(query.slice(value.from, value.to));
          continue;
        }
        matchers.push(name);
        if (op && query.slice(op.from, op.to) === '=') equalities.push(name);
      }
    }
  }
  return { metric, matchers, equalities };
}

function groupingLabels(node, query) {
  return children(node)
    .filter((c) => c.name === 'LabelName' || c.name === 'QuotedLabelName')
    .map((c) => (c.name === 'QuotedLabelName' ? unquote(query.slice(c.from, c.to)) : query.slice(c.from, c.to)));
}

class PromAnalysis {
  constructor(query, catalogue) {
    this.query = query;
    this.catalogue = catalogue || {};
    this.selectors = [];
    this.calls = [];
    this.groupings = [];
  }

  text(n) {
    return this.query.slice(n.from, n.to);
  }

  exprChildren(node) {
    return children(node).filter((c) => EXPRESSION_NODES.has(c.name));
  }

  metricsUnder(node) {
    const names = [];
    const cursor = node.cursor();
    const end = node.to;
    do {
      if (cursor.from >= end) break;
      if (cursor.name === 'VectorSelector') {
        const info = selectorInfo(cursor.node, this.query);
        if (info.metric) names.push(info.metric);
      }
    } while (cursor.next());
    return names;
  }

  labels(node) {
    switch (node.name) {
      case 'PromQL': {
        const inner = this.exprChildren(node)[0];
        return inner ? this.labels(inner) : scalarSet();
      }
      case 'ParenExpr':
      case 'OffsetExpr':
      case 'StepInvariantExpr':
      case 'SubqueryExpr':
      case 'UnaryExpr': {
        const inner = this.exprChildren(node)[0];
        return inner ? this.labels(inner) : scalarSet();
      }
      case 'MatrixSelector': {
        const inner = children(node).find((c) => c.name === 'VectorSelector');
        return inner ? this.labels(inner) : scalarSet();
      }
      case 'VectorSelector': {
        const info = selectorInfo(node, this.query);
        this.selectors.push(info);
        if (info.metric && Object.hasOwn(this.catalogue, info.metric)) {
          return closedSet([...this.catalogue[info.metric], ...info.matchers]);
        }
        return { scalar: false, known: new Set(info.matchers), open: true, removed: new Set() };
      }
      case 'NumberDurationLiteral':
      case 'NumberLiteral':
      case 'StringLiteral':
        return scalarSet();
      case 'FunctionCall':
        return this.functionLabels(node);
      case 'AggregateExpr':
        return this.aggregateLabels(node);
      case 'BinaryExpr':
        return this.binaryLabels(node);
      default:
        return { scalar: false, known: new Set(), open: true, removed: new Set() };
    }
  }

  functionLabels(node) {
    const ident = children(node).find((c) => c.name === 'FunctionIdentifier');
    const name = ident ? this.text(ident) : '';
    const body = children(node).find((c) => c.name === 'FunctionCallBody');
    const args = body ? this.exprChildren(body) : [];
    const argSets = args.map((a) => this.labels(a));
    this.calls.push({ fn: name, metrics: body ? this.metricsUnder(body) : [] });
    if (SCALAR_FUNCTIONS.has(name)) return scalarSet();
    if (NO_LABELS.has(name) && (name === 'vector' || args.length === 0)) return closedSet([]);
    if (name === 'absent' || name === 'absent_over_time') {
      const arg = args[0];
      let sel = arg;
      if (sel && sel.name === 'MatrixSelector') sel = children(sel).find((c) => c.name === 'VectorSelector');
      if (sel && sel.name === 'VectorSelector') return closedSet(selectorInfo(sel, this.query).equalities);
      return closedSet([]);
    }
    const vectorIndex = argSets.findIndex((s) => !s.scalar);
    if (vectorIndex < 0) return closedSet([]);
    const input = argSets[vectorIndex];
    const out = { scalar: false, known: new Set(input.known), open: input.open, removed: new Set(input.removed) };
    if (DROPS_LE.has(name)) {
      out.known.delete('le');
      out.removed.add('le');
    }
    if (ADDS_LABEL.has(name) && args[vectorIndex + 1] && args[vectorIndex + 1].name === 'StringLiteral') {
      const dst = unquote(this.text(args[vectorIndex + 1]));
      out.known.add(dst);
      out.removed.delete(dst);
    }
    return out;
  }

  aggregateLabels(node) {
    const opNode = children(node).find((c) => c.name === 'AggregateOp');
    const op = opNode ? this.text(opNode) : '';
    const modifier = children(node).find((c) => c.name === 'AggregateModifier');
    const body = children(node).find((c) => c.name === 'FunctionCallBody');
    const args = body ? this.exprChildren(body) : [];
    const argSets = args.map((a) => this.labels(a));
    const input = argSets[argSets.length - 1] || closedSet([]);
    let kind = null;
    let grouping = [];
    if (modifier) {
      kind = children(modifier).find((c) => c.name === 'By' || c.name === 'Without');
      kind = kind ? kind.name : null;
      const g = children(modifier).find((c) => c.name === 'GroupingLabels');
      grouping = g ? groupingLabels(g, this.query) : [];
      this.groupings.push(...grouping);
    }
    if (KEEP_INPUT_AGGREGATIONS.has(op)) {
      return { scalar: false, known: new Set(input.known), open: input.open, removed: new Set(input.removed) };
    }
    let out;
    if (kind === 'Without') {
      out = { scalar: false, known: new Set(input.known), open: input.open, removed: new Set(input.removed) };
      for (const l of grouping) {
        out.known.delete(l);
        out.removed.add(l);
      }
    } else if (kind === 'By') {
      out = closedSet(grouping.filter((l) => possible(input, l)));
    } else {
      out = closedSet([]);
    }
    if (op === 'count_values' && args[0] && args[0].name === 'StringLiteral') {
      out.known.add(unquote(this.text(args[0])));
    }
    return out;
  }

  binaryLabels(node) {
    const parts = children(node);
    const exprs = parts.filter((c) => EXPRESSION_NODES.has(c.name));
    if (exprs.length < 2) return { scalar: false, known: new Set(), open: true, removed: new Set() };
    const lhs = this.labels(exprs[0]);
    const rhs = this.labels(exprs[1]);
    const opNode = parts.find((c) => !EXPRESSION_NODES.has(c.name) && c.name !== 'BoolModifier'
      && c.name !== 'MatchingModifierClause');
    const op = opNode ? opNode.name : '';
    if (lhs.scalar && rhs.scalar) return scalarSet();
    if (lhs.scalar) return rhs;
    if (rhs.scalar) return lhs;

    const clause = parts.find((c) => c.name === 'MatchingModifierClause');
    let on = null;
    let ignoring = [];
    let groupSide = null;
    let include = [];
    if (clause) {
      const cs = children(clause);
      const lists = cs.filter((c) => c.name === 'GroupingLabels').map((g) => groupingLabels(g, this.query));
      if (cs.some((c) => c.name === 'On')) on = lists[0] || [];
      if (cs.some((c) => c.name === 'Ignoring')) ignoring = lists[0] || [];
      const side = cs.find((c) => c.name === 'GroupLeft' || c.name === 'GroupRight');
      if (side) {
        groupSide = side.name;
        include = lists[1] || [];
      }
      this.groupings.push(...lists.flat());
    }

    if (op === 'Or') {
      const known = new Set([...lhs.known, ...rhs.known].filter((l) => possible(lhs, l) && possible(rhs, l)));
      return { scalar: false, known, open: lhs.open && rhs.open, removed: new Set([...lhs.removed, ...rhs.removed]) };
    }
    if (op === 'And' || op === 'Unless') return lhs;
    if (groupSide) {
      const base = groupSide === 'GroupLeft' ? lhs : rhs;
      const other = groupSide === 'GroupLeft' ? rhs : lhs;
      const out = { scalar: false, known: new Set(base.known), open: base.open, removed: new Set(base.removed) };
      for (const l of include) {
        if (possible(other, l)) {
          out.known.add(l);
          out.removed.delete(l);
        }
      }
      return out;
    }
    if (on !== null) return closedSet(on.filter((l) => possible(lhs, l)));
    const out = { scalar: false, known: new Set(lhs.known), open: lhs.open, removed: new Set(lhs.removed) };
    for (const l of ignoring) {
      out.known.delete(l);
      out.removed.add(l);
    }
    return out;
  }
}

function analysePromql(tree, query, catalogue) {
  const analysis = new PromAnalysis(query, catalogue);
  const set = analysis.labels(tree.topNode);
  return {
    labels: { scalar: set.scalar, known: [...set.known].sort(), open: set.open, removed: [...set.removed].sort() },
    selectors: analysis.selectors,
    calls: analysis.calls,
    groupings: [...new Set(analysis.groupings)].sort(),
  };
}

// ---------------------------------------------------------------- LogQL

function analyseLogql(tree, query) {
  const streamLabels = [];
  const cursor = tree.cursor();
  do {
    if (cursor.name === 'Selector') {
      const sel = cursor.node;
      const inner = sel.cursor();
      do {
        if (inner.from >= sel.to) break;
        if (inner.name === 'Matcher') {
          const id = children(inner.node).find((c) => c.name === 'Identifier');
          if (id) streamLabels.push(query.slice(id.from, id.to));
        }
      } while (inner.next());
    }
  } while (cursor.next());

  // Labels of a metric query's result: a top-level vector aggregation with
  // `by` gives exactly its grouping; anything else keeps stream and parsed labels.
  let labels = null;
  const expr = children(tree.topNode)[0];
  const metric = expr && children(expr).find((c) => c.name === 'MetricExpr');
  if (metric) {
    const agg = children(metric).find((c) => c.name === 'VectorAggregationExpr');
    const grouping = agg && children(agg).find((c) => c.name === 'Grouping');
    if (grouping && children(grouping).some((c) => c.name === 'By')) {
      const names = [];
      for (const l of children(grouping).filter((c) => c.name === 'Labels')) {
        for (const id of children(l).filter((c) => c.name === 'Identifier')) names.push(query.slice(id.from, id.to));
      }
      labels = { scalar: false, known: names.sort(), open: false, removed: [] };
    } else if (agg) {
      labels = { scalar: false, known: [], open: Boolean(grouping), removed: [] };
    } else {
      labels = { scalar: false, known: [], open: true, removed: [] };
    }
  }
  return { streamLabels: [...new Set(streamLabels)].sort(), labels, metricQuery: Boolean(metric) };
}

// ---------------------------------------------------------------- main

function check(item, catalogue) {
  const parser = PARSERS[item.lang];
  if (!parser) return { ok: false, errors: [{ from: 0, to: 0, near: `unknown language ${item.lang}` }] };
  const query = item.query;
  if (typeof query !== 'string' || query.trim() === '') {
    return { ok: false, errors: [{ from: 0, to: 0, near: 'empty query' }] };
  }
  const tree = parser.parse(query);
  const errors = errorsOf(tree, query);
  const result = { ok: errors.length === 0, errors };
  if (errors.length === 0 && item.lang === 'promql') Object.assign(result, analysePromql(tree, query, catalogue));
  if (errors.length === 0 && item.lang === 'logql') Object.assign(result, analyseLogql(tree, query));
  return result;
}

const source = process.argv[2] ? readFileSync(process.argv[2], 'utf8') : readFileSync(0, 'utf8');
const input = JSON.parse(source);
const items = Array.isArray(input) ? input : input.queries;
const catalogue = Array.isArray(input) ? {} : input.catalogue || {};
process.stdout.write(JSON.stringify(items.map((item) => check(item, catalogue))));
