//! From a checked [`Model`] to the lookup tables of [`CompiledPolicy`].

use super::{ActionSet, CompiledPolicy, FastMap, NO_RULE};
use crate::policy::model::{Access, KindId, Model, RoleId};

impl CompiledPolicy {
    /// Compiles a checked model. Cost: O(roles × kinds × actions / 64 + rules × kinds).
    pub fn compile(model: &Model) -> CompiledPolicy {
        let n_kinds = model.kinds.len().max(1);
        let n_actions = model.actions.len();
        let words = n_actions.div_ceil(64).max(1);

        // kind_mask[k]: bit j set if kind j is k or one of its ancestors.
        let kind_mask: Vec<u64> = (0..model.kinds.len())
            .map(|k| {
                let mut mask = 0u64;
                let mut cur = Some(k as KindId);
                let mut steps = 0;
                while let Some(c) = cur {
                    mask |= 1 << c;
                    steps += 1;
                    if steps > model.kinds.len() {
                        break;
                    }
                    cur = model.kinds[c as usize].parent;
                }
                mask
            })
            .collect();
        let mask_of = |kinds: &[KindId]| kinds.iter().fold(0u64, |m, k| m | (1 << k));
        let applies =
            |on: &[KindId], leaf: usize| on.is_empty() || kind_mask[leaf] & mask_of(on) != 0;

        let mut write_actions = ActionSet::empty(n_actions);
        let mut read_mask = vec![0u64; words];
        for (i, a) in model.actions.iter().enumerate() {
            match a.access {
                Access::Write => write_actions.insert(i as u32),
                Access::Read => read_mask[i / 64] |= 1 << (i % 64),
            }
        }

        let mut deny_first = vec![NO_RULE; n_kinds * n_actions];
        for (ri, rule) in model.denies.iter().enumerate().rev() {
            for leaf in 0..model.kinds.len() {
                if !applies(&rule.on, leaf) {
                    continue;
                }
                for &a in &rule.actions {
                    deny_first[leaf * n_actions + a as usize] = ri as u32;
                }
            }
        }

        // Per role and kind: own grants, then inclusions folded in (memoised; inclusions form a DAG
        // of depth at most MAX_INCLUDE_DEPTH, checked before compiling).
        let n_roles = model.roles.len();
        let mut granted = vec![0u64; n_roles * n_kinds * words];
        let mut allow = vec![0u64; n_roles * n_kinds * words];
        let mut done = vec![false; n_roles];
        for r in 0..n_roles {
            fold_role(
                model,
                r as RoleId,
                &kind_mask,
                &read_mask,
                n_kinds,
                words,
                &mut granted,
                &mut allow,
                &mut done,
                0,
            );
        }
        let blocked: Vec<u64> = granted.iter().zip(&allow).map(|(g, a)| g & !a).collect();

        let mut self_allow = vec![0u64; n_kinds * words];
        for rule in &model.self_rules {
            for &a in &rule.actions {
                self_allow[rule.kind as usize * words + a as usize / 64] |= 1 << (a % 64);
            }
        }

        let kind_index: FastMap<Box<str>, KindId> = model
            .kinds
            .iter()
            .enumerate()
            .map(|(i, k)| (k.name.as_str().into(), i as KindId))
            .collect();
        let action_index: FastMap<Box<str>, u32> = model
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str().into(), i as u32))
            .collect();
        let role_index: FastMap<Box<str>, RoleId> = model
            .roles
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str().into(), i as RoleId))
            .collect();

        CompiledPolicy {
            model: model.clone(),
            kind_index,
            action_index,
            role_index,
            role_names: model
                .roles
                .iter()
                .map(|r| std::sync::Arc::from(r.name.as_str()))
                .collect(),
            kind_children: (0..model.kinds.len())
                .map(|k| {
                    (0..model.kinds.len())
                        .filter(|&c| model.kinds[c].parent == Some(k as KindId))
                        .map(|c| c as KindId)
                        .collect()
                })
                .collect(),
            kind_names: model
                .kinds
                .iter()
                .map(|k| k.name.as_bytes().into())
                .collect(),
            n_kinds,
            n_actions,
            words,
            write_actions,
            deny_first,
            allow,
            blocked,
            self_allow,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fold_role(
    model: &Model,
    role: RoleId,
    kind_mask: &[u64],
    read_mask: &[u64],
    n_kinds: usize,
    words: usize,
    granted: &mut [u64],
    allow: &mut [u64],
    done: &mut [bool],
    depth: usize,
) {
    let r = role as usize;
    if done[r] || depth > model.roles.len() {
        return;
    }
    let role_def = &model.roles[r];
    for &inc in &role_def.includes {
        fold_role(
            model,
            inc,
            kind_mask,
            read_mask,
            n_kinds,
            words,
            granted,
            allow,
            done,
            depth + 1,
        );
    }
    for (leaf, &leaf_mask) in kind_mask.iter().enumerate() {
        let base = (r * n_kinds + leaf) * words;
        let mut g = vec![0u64; words];
        let mut al = vec![0u64; words];
        for grant in &role_def.grants {
            let on_mask = grant.on.iter().fold(0u64, |m, k| m | (1 << k));
            if !grant.on.is_empty() && leaf_mask & on_mask == 0 {
                continue;
            }
            for &a in &grant.actions {
                g[a as usize / 64] |= 1 << (a % 64);
                al[a as usize / 64] |= 1 << (a % 64);
            }
        }
        for &inc in &role_def.includes {
            let ib = (inc as usize * n_kinds + leaf) * words;
            for w in 0..words {
                g[w] |= granted[ib + w];
                al[w] |= allow[ib + w];
            }
        }
        if role_def.observer {
            for w in 0..words {
                al[w] &= read_mask[w];
            }
        }
        granted[base..base + words].copy_from_slice(&g);
        allow[base..base + words].copy_from_slice(&al);
    }
    done[r] = true;
}
