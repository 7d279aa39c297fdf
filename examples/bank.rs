//! A user service: bank accounts that never overdraw. `cargo run --example bank`
use braft::{ApplyContext, Consistency, Node, Service, ServiceError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Default)]
struct Bank(BTreeMap<String, i64>);
#[derive(Serialize, Deserialize)]
enum Cmd {
    Deposit(String, i64),
    Transfer(String, String, i64),
}

impl Service for Bank {
    const NAME: &'static str = "bank";
    type Command = Cmd;
    type Output = i64; // the new balance of the account credited
    type Query = String; // an account
    type QueryOutput = i64;

    fn apply(&mut self, _: ApplyContext, cmd: Cmd) -> Result<i64, ServiceError> {
        let (to, amount) = match cmd {
            Cmd::Deposit(to, amount) => (to, amount),
            Cmd::Transfer(from, to, amount) => {
                let balance = self.0.get(&from).copied().unwrap_or(0);
                if balance < amount {
                    return Err(ServiceError::new("insufficient_funds", format!("{from} has {balance}")));
                }
                self.0.insert(from, balance - amount);
                (to, amount)
            }
        };
        *self.0.entry(to.clone()).or_default() += amount;
        Ok(self.0[&to])
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
    node.write::<Bank>(Cmd::Deposit("alice".into(), 100)).await?;
    let refused = node.write::<Bank>(Cmd::Transfer("bob".into(), "alice".into(), 5)).await;
    println!("bob -> alice: {}", refused.unwrap_err());
    println!(
        "alice has {}",
        node.read::<Bank>("alice".into(), Consistency::Linearizable).await?
    );
    Ok(node.run_until_shutdown().await?)
}
