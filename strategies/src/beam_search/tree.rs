//! [`SearchTree`]: the search tree of a beam search, kept as a petgraph graph (the only module
//! that names petgraph types), exported as JSON and Graphviz DOT.

use petgraph::dot::{Config, Dot};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use ponder_engine::Trace;
use serde::Serialize;

/// A node's id in its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NodeId(pub usize);

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Still being expanded (or left over when the search stopped).
    Active,
    /// Expanded into children (an inner node of the tree).
    Expanded,
    /// Dropped by the selection of its round.
    Pruned,
    /// Ended with an answer or end of sequence.
    Finished,
}

/// What a search ranks a path by: a path whose newest step was scored above one whose newest
/// step went unscored (past the scorer's window, or its read failed), then the aggregate of
/// the steps scored ([`ponder_prm::Aggregate::apply_scored`]). A path whose newest step went
/// unscored would otherwise rank on its parent's steps alone, above every sibling whose new
/// step scored lower under `min`, `prod` or `last`: the one step nobody could read would win.
/// (An earlier step left unscored does not demote a path for the rest of the search: its
/// newest step says where it stands now.)
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    /// The path's newest step (of the text scored: a roll-out's last) was scored.
    pub newest_scored: bool,
    /// The aggregate of the steps scored.
    pub reward: f64,
}

impl Rank {
    /// Orders ranks, a path with none (no step scored) lowest.
    pub fn cmp(a: Option<Rank>, b: Option<Rank>) -> std::cmp::Ordering {
        match (a, b) {
            (Some(a), Some(b)) => a
                .newest_scored
                .cmp(&b.newest_scored)
                .then(a.reward.total_cmp(&b.reward)),
            (a, b) => a.is_some().cmp(&b.is_some()),
        }
    }
}

/// A partial solution: one step added to its parent's.
#[derive(Debug, Clone, Serialize)]
pub struct SearchNode {
    /// The step's text (empty at the root).
    pub text: String,
    /// The scorer's score of this step.
    pub step_score: Option<f64>,
    /// The aggregate score of the path to here (`None` where a step of it went unscored).
    pub score: Option<f64>,
    /// What the search ranks the path by ([`Rank`]; `None`: no step of it scored).
    #[serde(skip)]
    pub rank: Option<Rank>,
    /// Tokens generated for the step.
    pub tokens: u64,
    /// Depth (the root is 0).
    pub depth: usize,
    /// Subtree (DVTS) or 0.
    pub subtree: usize,
    /// Where it stands.
    pub state: NodeState,
    /// On the path of the chosen answer.
    pub chosen: bool,
    /// The step was cut at the step limit; the next one continues it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub continues: bool,
    /// It ended because it filled the model's context window (its state is `Finished`, but it
    /// did not end by itself).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub out_of_context: bool,
    /// Its step was the last round's write to the end, and ran to its token limit
    /// (`max_final_tokens`, the context window, or what the budget left).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut_at_end: bool,
    /// Of those, one whose limit the budget had shortened.
    #[serde(skip)]
    pub cut_by_budget: bool,
    /// A final candidate's answer (read from its whole path), shown in the picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// The tree.
#[derive(Debug, Clone)]
pub struct SearchTree {
    graph: DiGraph<SearchNode, ()>,
    root: NodeIndex,
}

impl Default for SearchTree {
    fn default() -> Self {
        Self::new()
    }
}

impl SearchTree {
    /// A tree with only its root.
    pub fn new() -> Self {
        let mut graph = DiGraph::new();
        let root = graph.add_node(SearchNode {
            text: String::new(),
            step_score: None,
            score: None,
            rank: None,
            tokens: 0,
            depth: 0,
            subtree: 0,
            state: NodeState::Active,
            chosen: false,
            continues: false,
            out_of_context: false,
            cut_at_end: false,
            cut_by_budget: false,
            answer: None,
        });
        Self { graph, root }
    }

    /// The root.
    pub fn root(&self) -> NodeId {
        NodeId(self.root.index())
    }

    /// Adds a step under `parent`.
    pub fn add(&mut self, parent: NodeId, text: String, tokens: u64, subtree: usize) -> NodeId {
        let depth = self.node(parent).map_or(0, |p| p.depth + 1);
        let child = self.graph.add_node(SearchNode {
            text,
            step_score: None,
            score: None,
            rank: None,
            tokens,
            depth,
            subtree,
            state: NodeState::Active,
            chosen: false,
            continues: false,
            out_of_context: false,
            cut_at_end: false,
            cut_by_budget: false,
            answer: None,
        });
        self.graph.add_edge(NodeIndex::new(parent.0), child, ());
        NodeId(child.index())
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> Option<&SearchNode> {
        self.graph.node_weight(NodeIndex::new(id.0))
    }

    /// A node, to change.
    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut SearchNode> {
        self.graph.node_weight_mut(NodeIndex::new(id.0))
    }

    /// The parent of a node.
    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.graph
            .edges_directed(NodeIndex::new(id.0), petgraph::Direction::Incoming)
            .next()
            .map(|e| NodeId(e.source().index()))
    }

    /// The nodes from the root's first child down to `id`.
    pub fn path(&self, id: NodeId) -> Vec<NodeId> {
        let mut path = Vec::new();
        let mut at = Some(id);
        while let Some(node) = at {
            if node == self.root() {
                break;
            }
            path.push(node);
            at = self.parent(node);
        }
        path.reverse();
        path
    }

    /// Marks the path to `id` as chosen.
    pub fn choose(&mut self, id: NodeId) {
        for node in self.path(id) {
            if let Some(n) = self.node_mut(node) {
                n.chosen = true;
            }
        }
    }

    /// Number of nodes, root included.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether only the root is there.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() <= 1
    }

    /// The JSON and DOT export.
    pub fn trace(&self) -> Trace {
        #[derive(Serialize)]
        struct JsonNode<'a> {
            id: usize,
            parent: Option<usize>,
            #[serde(flatten)]
            node: &'a SearchNode,
        }
        let nodes: Vec<JsonNode<'_>> = self
            .graph
            .node_indices()
            .filter_map(|i| {
                let id = NodeId(i.index());
                self.graph.node_weight(i).map(|node| JsonNode {
                    id: id.0,
                    parent: self.parent(id).map(|p| p.0),
                    node,
                })
            })
            .collect();
        let json = serde_json::json!({ "nodes": nodes });
        let dot = Dot::with_attr_getters(
            &self.graph,
            &[Config::EdgeNoLabel, Config::NodeNoLabel],
            &|g, e| {
                let chosen = g.node_weight(e.target()).is_some_and(|n| n.chosen);
                if chosen {
                    "penwidth=3".to_string()
                } else {
                    String::new()
                }
            },
            &|_, (_, node)| node_attrs(node),
        );
        Trace {
            json,
            dot: format!("{dot:?}"),
        }
    }
}

fn node_attrs(node: &SearchNode) -> String {
    let mut text: String = node.text.chars().take(40).collect();
    if node.text.chars().count() > 40 {
        text.push('…');
    }
    let score = node.score.map_or("-".to_string(), |s| format!("{s:.2}"));
    // Ended by itself (a beam that filled the context window did not: it is a final
    // candidate only where none finished, as the still active ones are).
    let finished = node.state == NodeState::Finished && !node.out_of_context;
    let label = match (&node.answer, node.depth) {
        (_, 0) => "question".to_string(),
        (Some(answer), _) => format!("{score}\\n{}\\nanswer: {}", escape(&text), escape(answer)),
        (None, _) if node.out_of_context => {
            format!("{score}\\n{}\\nfilled the context window", escape(&text))
        }
        (None, _) if finished => format!("{score}\\n{}\\nno answer", escape(&text)),
        (None, _) => format!("{score}\\n{}", escape(&text)),
    };
    let font = if node.chosen {
        "Helvetica-Bold"
    } else {
        "Helvetica"
    };
    let mut attrs = format!("label=\"{label}\" shape=box fontname=\"{font}\"");
    match node.state {
        NodeState::Pruned => {
            attrs.push_str(" style=filled fillcolor=grey85 fontcolor=grey40 color=grey60")
        }
        // A final candidate whose last write ran to its token limit: framed, dashed.
        NodeState::Finished if finished && node.cut_at_end => {
            attrs.push_str(" peripheries=2 style=dashed")
        }
        NodeState::Finished if finished => attrs.push_str(" peripheries=2"),
        NodeState::Finished => attrs.push_str(" style=dashed"),
        NodeState::Active | NodeState::Expanded => {}
    }
    if node.chosen {
        attrs.push_str(" penwidth=3");
    }
    attrs
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_states_and_exports() {
        let mut tree = SearchTree::new();
        let a = tree.add(tree.root(), "step \"a\"".into(), 3, 0);
        let b = tree.add(a, "b".into(), 2, 0);
        let c = tree.add(a, "c".into(), 2, 0);
        tree.node_mut(c).unwrap().state = NodeState::Pruned;
        tree.node_mut(b).unwrap().state = NodeState::Finished;
        tree.choose(b);
        tree.node_mut(b).unwrap().answer = Some("42".into());
        assert_eq!(tree.path(b), vec![a, b]);
        assert_eq!(tree.len(), 4);
        let trace = tree.trace();
        let nodes = trace.json["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[2]["parent"], 1);
        assert_eq!(nodes[3]["state"], "pruned");
        assert!(trace.dot.starts_with("digraph"));
        assert!(trace.dot.contains("fillcolor=grey85"));
        assert!(trace.dot.contains("penwidth=3"));
        assert!(trace.dot.contains("step \\\"a\\\""));
        assert!(trace.dot.contains("answer: 42") && trace.dot.contains("Helvetica-Bold"));
        assert_eq!(nodes[2]["answer"], "42");
    }
}
