//! A user service: bank accounts that never overdraw. `cargo run --example bank`
use std::collections::BTreeMap;

use braft::{ApplyContext, Consistency, Node, Service, ServiceError};
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Bank(BTreeMap<String, i64>);

#[derive(Serialize, Deserialize)]
enum Cmd {
    Deposit { to: String, amount: i64 },
    Transfer { from: String, to: String, amount: i64 },
}

impl Service for Bank {
    const NAME: &'static str = "bank";
    type Command = Cmd;
    type Output = i64; // the balance of the account credited
    type Query = String; // an account
    type QueryOutput = i64;

    fn apply(&mut self, _ctx: ApplyContext, cmd: Cmd) -> Result<i64, ServiceError> {
        let (from, to, amount) = match cmd {
            Cmd::Deposit { to, amount } => (None, to, amount),
            Cmd::Transfer { from, to, amount } => (Some(from), to, amount),
        };
        if let Some(from) = from {
            let balance = self.0.get(&from).copied().unwrap_or(0);
            if balance < amount {
                return Err(ServiceError::new("insufficient_funds", format!("{from} has {balance}")));
            }
            self.0.insert(from, balance - amount);
        }
        let credited = self.0.entry(to).or_default();
        *credited += amount;
        Ok(*credited)
    }
    fn query(&self, account: String) -> Result<i64, ServiceError> {
        Ok(self.0.get(&account).copied().unwrap_or(0))
    }
    fn snapshot(&self) -> Result<Vec<u8>, ServiceError> {
        Ok(braft::codec::to_bytes(&self.0)?)
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), ServiceError> {
        self.0 = braft::codec::from_bytes(bytes)?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder().service(Bank::default()).start().await?;
    node.write::<Bank>(Cmd::Deposit {
        to: "alice".into(),
        amount: 100,
    })
    .await?;
    let refused = node
        .write::<Bank>(Cmd::Transfer {
            from: "bob".into(),
            to: "alice".into(),
            amount: 5,
        })
        .await;
    println!("bob -> alice: {:?}", refused.err());
    println!(
        "alice: {}",
        node.read::<Bank>("alice".into(), Consistency::Linearizable).await?
    );
    node.run_until_shutdown().await?;
    Ok(())
}
