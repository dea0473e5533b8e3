//! Votes over answers: majority (self-consistency) and reward-weighted, with answers grouped by
//! [`ponder_engine::answer::canonical_key`] (so `1/2`, `0.5` and `\frac{1}{2}` vote together),
//! then by [`ponder_engine::answer::equivalent`] (so `2(k+1)` and `2k+2`, `3.3333` and `10/3`).

use std::collections::HashMap;

use ponder_engine::answer::{canonical_key, Comparable};
use serde::{Deserialize, Serialize};

/// How best-of-N picks. Default `weighted`. Configs may also spell them as in the papers and
/// search-and-learn: `weighted_vote`, `majority_vote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The candidate with the highest reward.
    Naive,
    /// The answer whose candidates' rewards sum highest; within it, the best candidate. A
    /// candidate with an answer left unscored counts at the mean reward of those scored (see
    /// [`unscored_at_mean`]).
    #[default]
    #[serde(alias = "weighted_vote")]
    Weighted,
    /// The most frequent answer (self-consistency); ties go to the higher total reward, then
    /// to the answer seen first.
    #[serde(alias = "majority_vote")]
    Majority,
}

/// One answer group in a vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// A representative answer (the first seen).
    pub answer: String,
    /// Candidate indices in the group.
    pub members: Vec<usize>,
    /// Sum of the members' rewards (missing rewards count 0; a weighted vote gives them the
    /// mean first: [`unscored_at_mean`]).
    pub weight: f64,
}

/// The outcome of a selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The chosen candidate's index, or `None` when there were no candidates.
    pub index: Option<usize>,
    /// The answer groups: for `majority` largest first, for `weighted` heaviest first, for
    /// `naive` in the order first seen; empty where no candidate answered.
    pub groups: Vec<Group>,
    /// Why this candidate was chosen, in words.
    pub why: String,
}

/// Groups candidates with an answer, in order of first appearance: by equivalence key, then
/// each group joins the first earlier one whose answers are all
/// [`equivalent`](ponder_engine::answer::equivalent) to all of its
/// own (what a key cannot tell: the same expression written otherwise, a rounded decimal).
/// All to all, since equivalence is not transitive at the edges: `50%` is both `0.5` and
/// `50`, which share no group however the samples come.
pub fn groups(answers: &[Option<String>], rewards: &[Option<f64>]) -> Vec<Group> {
    // Per group, its distinct answers, prepared once.
    let mut merged: Vec<(Group, Vec<Comparable>)> = Vec::new();
    for group in keyed_groups(answers, rewards) {
        let mut forms: Vec<&str> = group
            .members
            .iter()
            .filter_map(|&i| answers.get(i).and_then(Option::as_deref))
            .collect();
        forms.sort_unstable();
        forms.dedup();
        let forms: Vec<Comparable> = forms.into_iter().map(Comparable::new).collect();
        let joins = merged
            .iter_mut()
            .find(|(_, theirs)| theirs.iter().all(|t| forms.iter().all(|f| t.equivalent(f))));
        match joins {
            Some((earlier, theirs)) => {
                earlier.members.extend(group.members);
                earlier.members.sort_unstable();
                earlier.weight += group.weight;
                theirs.extend(forms);
            }
            None => merged.push((group, forms)),
        }
    }
    merged.into_iter().map(|(group, _)| group).collect()
}

/// Groups candidates with an answer by equivalence key, in order of first appearance.
fn keyed_groups(answers: &[Option<String>], rewards: &[Option<f64>]) -> Vec<Group> {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Group> = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        let Some(answer) = answer else { continue };
        let reward = rewards.get(i).copied().flatten().unwrap_or(0.0);
        let key = canonical_key(answer);
        match by_key.get(&key) {
            Some(&g) => {
                if let Some(group) = out.get_mut(g) {
                    group.members.push(i);
                    group.weight += reward;
                }
            }
            None => {
                by_key.insert(key, out.len());
                out.push(Group {
                    answer: answer.clone(),
                    members: vec![i],
                    weight: reward,
                });
            }
        }
    }
    out
}

/// The rewards a weighted vote sums: a candidate with an answer but no reward (its read failed,
/// the budget refused it, or the solution passed the scorer's context window) at the mean
/// reward of the candidates with an answer that were scored. Counted as 0 it would weigh
/// against its answer as the worst score could: which candidates the budget leaves unscored is
/// an accident of the order their reads were granted in, and the long solutions are the ones
/// left out. `None` stays `None` where no candidate with an answer was scored (the vote then
/// goes by counts: [`Select::goes_by_votes`]). Rewards that are not numbers are none.
pub fn unscored_at_mean(answers: &[Option<String>], rewards: &[Option<f64>]) -> Vec<Option<f64>> {
    let scored: Vec<f64> = answers
        .iter()
        .zip(rewards)
        .filter(|(answer, _)| answer.is_some())
        .filter_map(|(_, reward)| reward.filter(|r| r.is_finite()))
        .collect();
    let mean = (!scored.is_empty()).then(|| scored.iter().sum::<f64>() / scored.len() as f64);
    answers
        .iter()
        .zip(rewards)
        .map(|(answer, reward)| match reward.filter(|r| r.is_finite()) {
            Some(r) => Some(r),
            None if answer.is_some() => mean,
            None => None,
        })
        .collect()
}

fn best_by_reward(members: impl Iterator<Item = usize>, rewards: &[Option<f64>]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for i in members {
        let r = rewards
            .get(i)
            .copied()
            .flatten()
            .unwrap_or(f64::NEG_INFINITY);
        if best.is_none_or(|(_, b)| r > b) {
            best = Some((i, r));
        }
    }
    best.map(|(i, _)| i)
}

impl Select {
    /// Whether [`Select::apply`] picks by votes: `majority`, or nothing with an answer was
    /// scored (a scorer that refused every candidate, or scored only those without one), where
    /// every answer's sum would be 0 and the first answer drawn would win, but the votes still
    /// say something. (Naive too: its best reward is no reward.) Rewards that are not numbers
    /// count as none.
    pub fn goes_by_votes(self, answers: &[Option<String>], rewards: &[Option<f64>]) -> bool {
        self == Self::Majority
            || (answers.iter().any(Option::is_some)
                && answers.iter().zip(rewards).all(|(answer, reward)| {
                    answer.is_none() || !reward.is_some_and(f64::is_finite)
                }))
    }

    /// Picks among candidates with these answers and rewards (same length).
    /// A reward that is not a number (NaN, infinite: a scorer's bug) counts as none.
    pub fn apply(self, answers: &[Option<String>], rewards: &[Option<f64>]) -> Selection {
        let rewards: Vec<Option<f64>> = rewards
            .iter()
            .map(|r| r.filter(|x| x.is_finite()))
            .collect();
        let rewards = rewards.as_slice();
        if answers.is_empty() {
            return Selection {
                index: None,
                groups: Vec::new(),
                why: "no candidates".into(),
            };
        }
        let answered = answers.iter().any(Option::is_some);
        if self != Self::Majority && self.goes_by_votes(answers, rewards) {
            let mut selection = Self::Majority.apply(answers, rewards);
            let what = match rewards.iter().all(Option::is_none) {
                true => "no candidate",
                false => "no candidate with an answer",
            };
            selection.why = format!("{what} was scored, so by votes: {}", selection.why);
            return selection;
        }
        let mut groups = match self {
            Self::Weighted => groups(answers, &unscored_at_mean(answers, rewards)),
            _ => groups(answers, rewards),
        };
        if groups.is_empty() || self == Self::Naive {
            // Naive, or nobody answered: the best reward wins (the first candidate on no
            // rewards), among those with an answer where any has one (a program's samples have
            // none: all of them).
            let index = if answered {
                best_by_reward(
                    (0..answers.len()).filter(|&i| answers[i].is_some()),
                    rewards,
                )
            } else {
                best_by_reward(0..answers.len(), rewards)
            }
            .or(Some(0));
            let why = match (self, groups.is_empty()) {
                (_, _) if rewards.iter().all(Option::is_none) => {
                    "no candidate was scored: the first drawn".to_string()
                }
                (Self::Naive, _) => "highest reward".to_string(),
                (_, true) => "no candidate has an answer: highest reward".to_string(),
                _ => String::new(),
            };
            if self != Self::Naive {
                groups.clear();
            }
            return Selection { index, groups, why };
        }
        // Stable sort keeps first-seen order among exact ties.
        match self {
            // Equal rewards (a verifier's 0/1, say): the answer more samples gave, then the one
            // more of whose samples were scored (not counted at the mean).
            Self::Weighted => {
                let scored = |g: &Group| {
                    g.members
                        .iter()
                        .filter(|&&i| rewards.get(i).copied().flatten().is_some())
                        .count()
                };
                groups.sort_by(|a, b| {
                    b.weight
                        .total_cmp(&a.weight)
                        .then(b.members.len().cmp(&a.members.len()))
                        .then(scored(b).cmp(&scored(a)))
                })
            }
            _ => groups.sort_by(|a, b| {
                b.members
                    .len()
                    .cmp(&a.members.len())
                    .then(b.weight.total_cmp(&a.weight))
            }),
        }
        let Some(top) = groups.first() else {
            return Selection {
                index: None,
                groups,
                why: "no groups".into(),
            };
        };
        // The best scored member (one left unscored only where none was).
        let index = best_by_reward(top.members.iter().copied(), rewards);
        let unscored = top
            .members
            .iter()
            .filter(|&&i| rewards.get(i).copied().flatten().is_none())
            .count();
        let why = match self {
            Self::Weighted => format!(
                "answer `{}` has the highest summed reward {:.3} over {} candidate(s){}",
                top.answer,
                top.weight,
                top.members.len(),
                match unscored {
                    0 => String::new(),
                    k => format!(" ({k} of them unscored, counted at the mean reward)"),
                }
            ),
            _ => format!(
                "answer `{}` has {} of {} votes",
                top.answer,
                top.members.len(),
                answers.len()
            ),
        };
        Selection { index, groups, why }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(xs: &[Option<&str>]) -> Vec<Option<String>> {
        xs.iter().map(|x| x.map(String::from)).collect()
    }

    #[test]
    fn majority_groups_equivalent_answers() {
        let answers = a(&[
            Some("0.5"),
            Some("7"),
            Some("1/2"),
            Some("\\frac{1}{2}"),
            Some("7"),
        ]);
        let s = Select::Majority.apply(&answers, &[None; 5]);
        assert_eq!(s.index, Some(0));
        assert_eq!(s.groups[0].members, vec![0, 2, 3]);
        assert!(s.why.contains("3 of 5"));
    }

    #[test]
    fn answers_a_key_tells_apart_vote_together_where_they_are_equivalent() {
        // The same function written twice, and a rounded decimal of a fraction: their keys
        // differ, their values do not.
        let answers = a(&[
            Some("2k+2"),
            Some("3.3333"),
            Some("2(k+1)"),
            Some("k+2"),
            Some("10/3"),
            Some("2 + 2k"),
        ]);
        let s = Select::Majority.apply(&answers, &[None; 6]);
        assert_eq!(s.groups[0].answer, "2k+2");
        assert_eq!(s.groups[0].members, vec![0, 2, 5]);
        assert_eq!(s.groups[1].members, vec![1, 4]);
        assert_eq!(s.groups[2].members, vec![3]);
        assert!(s.why.contains("3 of 6"), "{}", s.why);
        // Weights add up as the members join.
        let rewards = [
            Some(0.1),
            Some(0.5),
            Some(0.2),
            Some(0.9),
            Some(0.5),
            Some(0.3),
        ];
        let w = Select::Weighted.apply(&answers, &rewards);
        assert_eq!(w.index, Some(1), "{:?}", w.groups);
        assert!((w.groups[0].weight - 1.0).abs() < 1e-9, "{:?}", w.groups);
        // `50%` is `0.5` and `50`, which are not one answer: whatever the order, `0.5` stays
        // apart from the group `50%` and `50` share by key.
        for answers in [
            a(&[Some("0.5"), Some("50%"), Some("50"), Some("50")]),
            a(&[Some("50"), Some("0.5"), Some("50%"), Some("50")]),
        ] {
            let s = Select::Majority.apply(&answers, &[None; 4]);
            assert_eq!(s.groups.len(), 2, "{:?}", s.groups);
            assert_eq!(s.groups[0].members.len(), 3, "{:?}", s.groups);
            assert_ne!(answers[s.index.unwrap()].as_deref(), Some("0.5"));
        }
    }

    #[test]
    fn weighted_sums_rewards_and_naive_takes_the_best_one() {
        let answers = a(&[Some("3"), Some("4"), Some("4"), Some("5")]);
        let rewards = [Some(0.9), Some(0.5), Some(0.6), Some(0.2)];
        let w = Select::Weighted.apply(&answers, &rewards);
        assert_eq!(w.index, Some(2), "group 4 weighs 1.1; its best member is 2");
        let n = Select::Naive.apply(&answers, &rewards);
        assert_eq!(n.index, Some(0));
        let m = Select::Majority.apply(&answers, &rewards);
        assert_eq!(m.index, Some(2));
        // A candidate without an answer scored best is no answer to give, where others have
        // one; where none has (a program's samples), the best reward still picks.
        let some_answered = a(&[None, Some("4"), Some("4")]);
        let rewards = [Some(0.9), Some(0.5), Some(0.6)];
        assert_eq!(Select::Naive.apply(&some_answered, &rewards).index, Some(2));
        assert_eq!(
            Select::Naive.apply(&a(&[None, None, None]), &rewards).index,
            Some(0)
        );
    }

    #[test]
    fn a_weighted_vote_with_nothing_scored_counts_votes() {
        let answers = a(&[Some("3"), Some("4"), Some("4")]);
        let s = Select::Weighted.apply(&answers, &[None; 3]);
        assert_eq!(s.index, Some(1));
        assert_eq!(
            s.why,
            "no candidate was scored, so by votes: answer `4` has 2 of 3 votes"
        );
        // Naive too: the first drawn may have no answer at all.
        let n = Select::Naive.apply(&answers, &[None; 3]);
        assert_eq!(
            (n.index, n.why.as_str()),
            (
                Some(1),
                "no candidate was scored, so by votes: answer `4` has 2 of 3 votes"
            )
        );
        let unanswered_first = a(&[None, Some("4"), Some("5"), Some("5")]);
        assert_eq!(
            Select::Naive.apply(&unanswered_first, &[None; 4]).index,
            Some(2)
        );
        // Only a candidate without an answer was scored: the votes still decide.
        let answers = a(&[Some("3"), Some("4"), Some("4"), None]);
        let s = Select::Weighted.apply(&answers, &[None, None, None, Some(0.9)]);
        assert_eq!(s.index, Some(1));
        assert!(
            s.why
                .starts_with("no candidate with an answer was scored, so by votes"),
            "{}",
            s.why
        );
    }

    #[test]
    fn a_reward_that_is_not_a_number_counts_as_none() {
        let answers = a(&[Some("3"), Some("4"), Some("5")]);
        let rewards = [Some(f64::NAN), Some(0.5), Some(f64::INFINITY)];
        assert_eq!(Select::Naive.apply(&answers, &rewards).index, Some(1));
        // (Weighted, those left unscored count at the mean: three answers of 0.5, and the one
        // scored wins the tie.)
        assert_eq!(Select::Weighted.apply(&answers, &rewards).index, Some(1));
    }

    #[test]
    fn a_weighted_vote_counts_the_unscored_at_the_mean_reward() {
        // Three long solutions the budget left unscored agree; two scored ones agree on
        // another answer. At 0 the three weighed nothing, and the two won by their rewards.
        let answers = a(&[Some("5"), Some("5"), Some("6"), Some("6"), Some("6"), None]);
        let rewards = [Some(0.7), Some(0.8), None, None, None, Some(0.1)];
        assert_eq!(
            unscored_at_mean(&answers, &rewards),
            [
                Some(0.7),
                Some(0.8),
                Some(0.75),
                Some(0.75),
                Some(0.75),
                Some(0.1)
            ]
        );
        let w = Select::Weighted.apply(&answers, &rewards);
        assert_eq!(w.index, Some(2));
        assert_eq!(
            w.why,
            "answer `6` has the highest summed reward 2.250 over 3 candidate(s) (3 of them \
             unscored, counted at the mean reward)"
        );
        // Within the winning answer, a scored member is chosen over one left unscored.
        let answers = a(&[Some("5"), Some("6"), Some("6")]);
        let w = Select::Weighted.apply(&answers, &[Some(0.2), None, Some(0.3)]);
        assert_eq!(w.index, Some(2));
    }

    #[test]
    fn ties() {
        // Majority tie 1-1: the higher total reward wins; with equal rewards, the first seen.
        let answers = a(&[Some("1"), Some("2")]);
        assert_eq!(
            Select::Majority
                .apply(&answers, &[Some(0.1), Some(0.2)])
                .index,
            Some(1)
        );
        assert_eq!(
            Select::Majority.apply(&answers, &[None, None]).index,
            Some(0)
        );
        // Weighted tie: first seen.
        assert_eq!(
            Select::Weighted
                .apply(&answers, &[Some(0.5), Some(0.5)])
                .index,
            Some(0)
        );
        // Naive tie: first.
        assert_eq!(
            Select::Naive.apply(&answers, &[Some(0.5), Some(0.5)]).index,
            Some(0)
        );
        // Weighted tie of rewards (a verifier's 0/1): the answer more samples gave, then the
        // first seen.
        let answers = a(&[Some("1"), Some("2"), Some("2")]);
        let selection = Select::Weighted.apply(&answers, &[Some(1.0), Some(1.0), Some(0.0)]);
        assert_eq!(selection.index, Some(1), "{}", selection.why);
        assert_eq!(
            Select::Weighted
                .apply(&answers, &[Some(0.0), Some(0.0), Some(0.0)])
                .index,
            Some(1)
        );
    }

    #[test]
    fn all_wrong_one_answer_groups_and_no_answers() {
        // Every candidate a different answer: majority falls back to the reward.
        let answers = a(&[Some("1"), Some("2"), Some("3")]);
        let s = Select::Majority.apply(&answers, &[Some(0.1), Some(0.7), Some(0.3)]);
        assert_eq!(s.index, Some(1));
        assert_eq!(s.groups.len(), 3);
        // Candidates without answers do not vote, but a lone answer wins.
        let answers = a(&[None, Some("9"), None]);
        assert_eq!(
            Select::Majority
                .apply(&answers, &[Some(0.9), Some(0.1), None])
                .index,
            Some(1)
        );
        // Nobody answered: highest reward.
        let answers = a(&[None, None]);
        let s = Select::Weighted.apply(&answers, &[Some(0.2), Some(0.4)]);
        assert_eq!(s.index, Some(1));
        assert!(s.why.contains("no candidate has an answer"));
        assert_eq!(Select::Majority.apply(&[], &[]).index, None);
    }
}
